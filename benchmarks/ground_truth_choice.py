"""Choose defaults on a separate seed of a ground-truth market, never on the reported test.

Usage::

    PYTHONPATH=. python benchmarks/ground_truth_choice.py SCENARIO MODE {exact,new} \
        STEPS MARKET_SEED [key=value ...]

Trains with checkpoint=last and best_model_path, then scores the best and the last weights
on the test range of a 260-session market (fit 150, val 30, test ~65) of seed MARKET_SEED
(not the default 25), printing one JSON line. key=value are TrainingSettings overrides.
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

from backend.config.training_config import FeatureConfig, TrainingSettings
from backend.data_download.dataset import SymbolDataset, bar_range
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
from backend.training.train import TRAINING_ENV_DEFAULTS, train_on_range

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
env = {
    "exact": TRAINING_ENV_DEFAULTS,
    "new": dataclasses.replace(
        TRAINING_ENV_DEFAULTS, dsr_bias_correction=True, dsr_warmup_steps=2, dsr_floor_vol=0.5
    ),
}[variant]
settings = TrainingSettings(
    encoder_mode=mode,
    sequence_length=16,
    embedding_dim=16,
    manual_hidden_dims=(32, 32),
    cnn_channels=16,
    cnn_dilations=(1, 2, 4),
    lstm_hidden_size=16,
    transformer_hidden_dim=16,
    transformer_num_layers=1,
    transformer_num_heads=2,
    net_arch=(64, 64),
    total_timesteps=steps,
    learning_rate=1e-3,
    batch_size=64,
    buffer_size=10_000,
    learning_starts=500,
    eval_every_steps=1000,
    early_stop_window=100,
    early_stop_smoothing=2,
    seed=mseed,
    tensorboard_log=None,
    share_features_extractor=True,
    train_freq=2,
    checkpoint="last",
    **over,
)
th.manual_seed(0)
t0 = time.time()
best_path = Path(tempfile.mkdtemp()) / "best.zip"
res = train_on_range(ds, fit, val, settings, env, best_model_path=best_path)
arrays = ds.arrays(res.normalizer)
tcfg = dataclasses.replace(res.env_config, episode_sessions=0, random_start=False)
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
    env_t = IntradayTradingEnv(arrays, tcfg, bar_range(arrays, *ds.session_bounds(*test)))
    ro = rollout_policy(model, env_t, deterministic=True)
    r = ro.net_returns
    out[name] = {
        "test_sharpe": float(r.mean() / r.std() * math.sqrt(26 * 252)) if r.std() > 0 else 0.0,
        "test_mean_bp": float(r.mean() * 1e4),
        "mean_abs_pos": float(np.mean(np.abs(ro.positions))),
    }
out["time"] = time.time() - t0
print(json.dumps(out), flush=True)
