"""ServerProxy: the only place that talks to an upstream server, one per server.

`proxy.ServerProxy` holds every mechanism (fairness, limits, retries, breaker, coalescing,
cache, stats) and needs no Ray; the app builder deploys it as is. `handle.HandleUpstreams`
is the router's side of the hop, `types` what crosses it.
"""
