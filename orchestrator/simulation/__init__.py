"""The simulator: runs journeys on synthetic contacts in skipped time and reports what they did."""
