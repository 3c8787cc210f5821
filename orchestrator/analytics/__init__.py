"""Journey analytics: the one reporting model the CLI, the API, the dashboard and the
simulator read.

Writing (called by activities, the router and feedback, inside their transactions):
- `trail`: each run's decisions, with reasons, written idempotently;
- `counts`: counters kept on write, by the day the run entered (a cohort);
- `attribution`: goal events convert a run within `goal.within`, alive or not.

Reading:
- `stats`: `JourneyStats` for `journeys stats` and `GET /v1/journeys/{id}/stats`;
- `significance`: differences between split variants, with 95 % intervals;
- `story`: a contact's story in time order for `journeys explain`;
- `daily`, `message_log`, `profile`, `send_health`: what the dashboard adds (entries per
  day, the message log, a contact's profile, sending's health).
"""
