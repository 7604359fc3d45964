"""The shipped sample configuration is what the code's options generate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

GENERATOR_CONF = REPO / "etc" / "panko-collector" / "panko-collector-config-generator.conf"
SAMPLE = REPO / "etc" / "panko-collector" / "panko-collector.conf.sample"


def test_sample_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.conf"
    subprocess.run(
        [sys.executable, "-m", "oslo_config.generator", "--config-file", str(GENERATOR_CONF),
         "--output-file", str(fresh)],
        check=True,
        cwd=REPO,
    )
    assert fresh.read_text() == SAMPLE.read_text(), (
        "etc/panko-collector/panko-collector.conf.sample is stale: regenerate it with "
        f"oslo-config-generator --config-file {GENERATOR_CONF.relative_to(REPO)}"
    )


def test_secrets_are_marked_secret() -> None:
    from panko_collector import opts

    secret = {(group, o.name) for group, options in opts.list_opts() for o in options if o.secret}
    assert ("database", "connection") in secret
    names = {(group, o.name) for group, options in opts.list_opts() for o in options}
    if (None, "transport_url") in names:
        assert (None, "transport_url") in secret


POLICY_GENERATOR_CONF = REPO / "etc" / "panko-collector" / "panko-collector-policy-generator.conf"
POLICY_SAMPLE = REPO / "etc" / "panko-collector" / "policy.yaml.sample"


def test_policy_sample_is_up_to_date(tmp_path: Path) -> None:
    fresh = tmp_path / "policy.yaml"
    generator = Path(sys.executable).parent / "oslopolicy-sample-generator"
    subprocess.run(
        [str(generator), "--config-file", str(POLICY_GENERATOR_CONF), "--output-file",
         str(fresh)],
        check=True,
        cwd=REPO,
    )
    assert fresh.read_text() == POLICY_SAMPLE.read_text(), (
        "etc/panko-collector/policy.yaml.sample is stale: regenerate it with "
        f"oslopolicy-sample-generator --config-file {POLICY_GENERATOR_CONF.relative_to(REPO)}"
    )


def test_the_api_options_are_in_the_sample() -> None:
    text = SAMPLE.read_text()
    for section in ("[api]", "[keystone_authtoken]", "[cors]", "[oslo_middleware]",
                    "[oslo_policy]"):
        assert section in text, section
    assert "#auth_strategy = keystone" in text and "#port = 8977" in text
