"""`sessionlab try`: the user's own server and client programs through a scenario's
devices, with events at chosen times, and a report of what happened (see `plan`,
`runner`, `analysis`)."""
