# SPDX-License-Identifier: MIT
"""The example custom channel myio and the bundled demo bot (examples/): tests/lua/cases/
myio_demo.json (as examples/*.yml configure them) and myio_recording.json (what myio hands to
the bot)."""
import unittest

import cases

MyioDemo = cases.table_tests("myio_demo", "MyioDemo")
MyioRecording = cases.table_tests("myio_recording", "MyioRecording")

if __name__ == "__main__":
    unittest.main()
