"""`sessionlab characterize`: a session device's behaviour profile, measured from traffic (S6).

- `bisect`: the idle-time search (rounds of parallel probes, then narrowing); pure.
- `profile`: the profile as data (profile.json), its requirement table, profile.md.
- `nat`: turnutils_natdiscovery's output as NAT behaviour in RFC 4787 / 5780 terms.
- `attach`: validating and attaching a device the lab did not build.
- `run`: the orchestration: builds the lab around the device, probes, writes the run folder.

Modules are imported by name (`from lab.characterize.profile import Profile`); this package
imports none of them, so the pure ones load without the lab.
"""
