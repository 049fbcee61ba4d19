"""Choose defaults on a separate seed of a ground-truth market, never on the reported test.

Usage::

    PYTHONPATH=. python benchmarks/ground_truth_choice.py SCENARIO MODE {exact,new} \
        STEPS MARKET_SEED [key=value ...]

Trains with checkpoint=last and best_model_path, then scores the best and the last weights
on the test range of a 260-session market (fit 150, val 30, test ~65) of seed MARKET_SEED
(not the default 25), printing one JSON line. key=value are ``training`` section overrides
over the ``short`` preset.
"""

import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch as th

from backend.config.experiment import resolve_experiment
from backend.data_download.dataset import SymbolDataset, bar_range
from backend.data_download.feature_config import FeatureConfig
from backend.data_download.loader import join_vix_asof
from backend.data_download.synthetic_market import (
    DEFAULT_CONFIG,
    generate_synthetic_market,
    market_scenario,
    theoretical_edge_per_bar,
)
from backend.environments.intraday_env import IntradayTradingEnv
from backend.evaluation.rollout import rollout_policy
from backend.models.sac import YoopSAC
from backend.training.train import train_on_range

scenario, mode, variant, steps, mseed = (
    sys.argv[1],
    sys.argv[2],
    sys.argv[3],
    int(sys.argv[4]),
    int(sys.argv[5]),
)
over = {}
for kv in sys.argv[6:]:
    k, v = kv.split("=")
    over[k] = float(v) if "." in v else int(v)
cfg = dataclasses.replace(
    market_scenario(scenario),
    seed=mseed,
    end=None,
    n_sessions=260,
    underlyings=DEFAULT_CONFIG.underlyings[:1],
    leveraged=(),
)
fr = generate_synthetic_market(cfg)
ds = SymbolDataset.from_market(
    "SPY", join_vix_asof(fr["SPY"], fr["VIX"]), FeatureConfig.for_agent("SAC_INTRADAY_DSR")
)
s = ds.ready_sessions
fit, val, test = (s[0], s[149]), (s[155], s[184]), (s[190], s[-1])
reward = {
    "exact": {},
    "new": {"bias_correction": True, "warmup_steps": 2, "floor_vol": 0.5},
}[variant]
config = resolve_experiment(
    "short",
    overrides={
        "reward": reward,
        "encoder": {"name": mode},
        "training": {
            "total_timesteps": steps,
            "early_stop_window": 100,
            "seed": mseed,
            "tensorboard_log": None,
            "checkpoint": "last",
            **over,
        },
    },
).for_mode(mode)
th.manual_seed(0)
t0 = time.time()
best_path = Path(tempfile.mkdtemp()) / "best.zip"
res = train_on_range(ds, fit, val, config, best_model_path=best_path)
arrays = ds.arrays(res.normalizer)
tcfg = res.env_config.model_copy(update={"episode_sessions": 0, "random_start": False})
edge = theoretical_edge_per_bar(cfg)
out = {
    "scenario": scenario,
    "mode": mode,
    "variant": variant,
    "steps": steps,
    "mseed": mseed,
    "over": over,
    "val_history": res.val_history,
    "best_step": res.metrics["best_step"],
    "val_se": res.metrics["val_sharpe_se"],
    "theory_net_bp": edge.per_session_bar(2e-4) * 1e4,
    "theory_sharpe_net": edge.annual_sharpe(2e-4),
}
models = {"last": res.model}
if best_path.exists():
    models["best"] = YoopSAC.load(best_path, device="cpu")
for name, model in models.items():
    env_t = IntradayTradingEnv(
        arrays, tcfg, bar_range(arrays, *ds.session_bounds(*test)), reward=res.config.reward
    )
    ro = rollout_policy(model, env_t, deterministic=True)
    r = ro.net_returns
    out[name] = {
        "test_sharpe": float(r.mean() / r.std() * math.sqrt(26 * 252)) if r.std() > 0 else 0.0,
        "test_mean_bp": float(r.mean() * 1e4),
        "mean_abs_pos": float(np.mean(np.abs(ro.positions))),
    }
out["time"] = time.time() - t0
print(json.dumps(out), flush=True)
