"""Mixed precision engages only on CUDA: ``use_amp=True`` is plain FP32 on CPU."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from backend.models.feature_extractors import ManualEncoderConfig, encoder_policy_kwargs
from backend.models.sac import YoopSAC

th.set_num_threads(1)

N_FEATURES = 6


class _ToyEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """The trading env's flat observation layout with random features; 20-step episodes."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict(  # type: ignore[assignment]
            {
                "features": spaces.Box(-5.0, 5.0, (N_FEATURES,), np.float32),
                "account": spaces.Box(-1.0, 1.0, (3,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "features": self.np_random.standard_normal(N_FEATURES).astype(np.float32),
            "account": np.zeros(3, np.float32),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        self._t += 1
        return self._obs(), float(action[0]), False, self._t >= 20, {}


def _model(device: str) -> YoopSAC:
    kwargs = encoder_policy_kwargs(
        "manual", ManualEncoderConfig(hidden_dims=(16,), embedding_dim=8)
    )
    return YoopSAC(
        "MultiInputPolicy",
        _ToyEnv(),
        use_amp=True,
        gradient_accumulation_steps=2,
        batch_size=32,
        learning_starts=40,
        seed=0,
        device=device,
        policy_kwargs={**kwargs, "net_arch": [16]},
    )


def _record_autocast(model: YoopSAC) -> list[tuple[bool, bool, th.dtype]]:
    """Hook the critic's encoder: (cpu autocast on, cuda autocast on, output dtype) per call."""
    seen: list[tuple[bool, bool, th.dtype]] = []

    def hook(module: th.nn.Module, inputs: Any, output: th.Tensor) -> None:
        if module.training:  # only forward passes made inside train()
            seen.append(
                (th.is_autocast_enabled("cpu"), th.is_autocast_enabled("cuda"), output.dtype)
            )

    model.critic.features_extractor.register_forward_hook(hook)
    return seen


def test_use_amp_on_cpu_is_plain_fp32() -> None:
    model = _model("cpu")
    assert not model.amp_enabled
    assert not model.grad_scaler.is_enabled()
    seen = _record_autocast(model)
    model.learn(total_timesteps=60)
    assert seen, "train() must have run"
    assert all(not cpu and not cuda for cpu, cuda, _ in seen)
    assert {dtype for _, _, dtype in seen} == {th.float32}
    assert all(p.dtype == th.float32 for p in model.policy.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")
def test_use_amp_on_cuda_engages_autocast() -> None:
    model = _model("cuda")
    assert model.amp_enabled
    assert model.grad_scaler.is_enabled()
    seen = _record_autocast(model)
    model.learn(total_timesteps=60)
    assert seen and all(cuda for _, cuda, _ in seen)
    assert th.float16 in {dtype for _, _, dtype in seen}
    # Master weights stay FP32; only the activations are half precision.
    assert all(p.dtype == th.float32 for p in model.policy.parameters())
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
