"""os-ken controller apps. Each app is `controllers/<app>/logic.py` (pure decisions, tested
offline) plus `controllers/<app>/app.py` (the os-ken adapter); `controllers.ofp` is the
OpenFlow layer they share (`Flow`, its translation, the switch handling);
`controllers.run` starts one."""
