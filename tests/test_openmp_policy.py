"""``import explorer`` makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless told otherwise.

The policy only takes effect when set before torch loads OpenMP, so the check runs in fresh
interpreters: one where explorer comes first, one where the user chose a policy.
"""

import os
import subprocess
import sys

import pytest

_SNIPPET = "import os, explorer, torch; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy(env_policy: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run([sys.executable, "-c", _SNIPPET], env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def test_import_sets_passive_wait_policy():
    assert _policy(None) == "PASSIVE"


@pytest.mark.parametrize("chosen", ["ACTIVE", "passive"])
def test_a_policy_the_user_set_is_kept(chosen):
    assert _policy(chosen) == chosen
