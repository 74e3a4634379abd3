# SPDX-License-Identifier: MIT
"""The rest channel's UserMessage rules (docs/contract.md §3.4, §3.5, §8):
tests/lua/cases/rest_message.json."""
import unittest

import cases

RestMessage = cases.table_tests("rest_message", "RestMessage")

if __name__ == "__main__":
    unittest.main()
