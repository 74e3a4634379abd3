# SPDX-License-Identifier: MIT
"""Rasa's fallbacks for a push channel that lacks senders, and channel.ack (docs/contract.md §4,
§4.1): tests/lua/cases/push_fallbacks.json."""
import unittest

import cases

PushFallbacks = cases.table_tests("push_fallbacks", "PushFallbacks")

if __name__ == "__main__":
    unittest.main()
