"""Campaigns: a journey sent to every member of a segment at a scheduled time.

`trigger: {schedule: "2027-01-15 10:00" | cron line, segment: newsletter, local_time,
throttle}`. A Temporal Schedule per campaign journey (`schedules`) starts a
`CampaignWorkflow` when it is due; the workflow opens a dispatch (`dispatch`: the
members' timezones make its waves, `timing`), and releases each wave's members as
`Campaign Due` events chosen by SQL, in chunks bounded by the router's backlog and the
throttle; the router starts their runs as for any event. `gate` holds or drops a
campaign's sends while it is paused or cancelled and spaces them to the throttle;
`control` is `journeys campaigns list|pause|resume|cancel`.
"""
