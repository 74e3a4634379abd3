# SPDX-License-Identifier: MIT
"""Dispatch order and collected shapes (docs/contract.md §4.1, §4.2) through the rest channel:
tests/lua/cases/dispatch.json."""
import unittest

import cases

Dispatch = cases.table_tests("dispatch", "Dispatch")

if __name__ == "__main__":
    unittest.main()
