"""The trading environment. Importing this package registers its Gymnasium id.

``gym.make("YoopRL/IntradayTrading-v0")`` (after ``import backend.environments``) or
``gym.make("backend.environments:YoopRL/IntradayTrading-v0")`` builds the env on the
embedded synthetic market; keyword arguments are those of
:func:`backend.environments.factory.make_intraday_env`.
"""

from backend.environments.intraday_env import ENV_ID, IntradayTradingEnv, register_env

__all__ = ["ENV_ID", "IntradayTradingEnv", "register_env"]

register_env()
