"""The Ray runtime: the protocol's seam implemented with Ray actors.

Every Ray call of the store's actors goes through here: `transport.RayTransport` (calls with
deadlines to named actors, values by reference, background work as Ray tasks), `placement`
(names, spawning and pinning of actors), `hosts` (the vnode, node and coordinator classes
wrapped by ``ray.remote`` at spawn, each given a `RayEnv`), `localray` (the embedded Ray on
127.0.0.1) and `metrics` (Ray's metrics pipeline).
"""
