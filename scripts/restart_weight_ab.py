"""A/B of the thick-restart keep rule: restart_weight from the cost model against 0 (the old rule).

    .venv/bin/python scripts/restart_weight_ab.py 316 10:LA 1:SA   # laplace2d_N316, cases k:which

Same process, alternating, seeds 0 and 1, float64, tol 1e-6, one thread, copy check off.
"""
import time, torch, sys, numpy as np
torch.set_num_threads(1)
import importlib
import explorer
st = importlib.import_module("explorer.solvers.lanczos.state")
import explorer.bench.matrix as bm
from explorer import solve
N=int(sys.argv[1]); cases=[(int(c.split(':')[0]), c.split(':')[1]) for c in sys.argv[2:]]
p = bm.make_problems([f"laplace2d_N{N}"])[0]
orig = st.restart_weight
for k, which in cases:
    ref = p.reference(k, which)
    for rep in range(2):
        for label, fn in (("w=0", lambda op, m: 0.0), ("weighted", orig)):
            st.restart_weight = fn
            t=time.perf_counter(); r=solve("lanczos", p.operator, k, which=which, tol=1e-6, seed=rep, max_iter=10**6, copy_check="off"); dt=time.perf_counter()-t
            vals=np.sort(r.eigenvalues.numpy()); ref_s=np.sort(ref)
            err=np.max(np.abs(vals-ref_s)/np.abs(ref_s))
            print(N, k, which, label, "mv", r.n_matvec, "wall %.2f"%dt, "err %.1e"%err, "restarts", r.message.split(" thick")[0][-4:], flush=True)
