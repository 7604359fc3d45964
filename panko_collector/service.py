"""Building the one configuration object that every entry point passes on."""

from __future__ import annotations

from collections.abc import Sequence

from oslo_config import cfg
from oslo_log import log

from panko_collector import __version__, opts

PROJECT = "panko-collector"


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register every option of the project on ``conf``."""
    for group, options in opts.list_opts():
        conf.register_opts(options, group=group)


def prepare_service(
    argv: Sequence[str] | None = None,
    config_files: Sequence[str] | None = None,
    cli_opts: Sequence[cfg.Opt] = (),
) -> cfg.ConfigOpts:
    """Return a fresh, parsed configuration with logging set up.

    ``argv`` excludes the program name. Without ``--config-file`` the usual
    places are searched (``/etc/panko-collector/panko-collector.conf`` and
    the like); none is required.
    """
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register_opts(conf)
    conf.register_cli_opts(list(cli_opts))
    conf(
        list(argv) if argv is not None else None,
        project=PROJECT,
        version=__version__,
        default_config_files=list(config_files) if config_files is not None else None,
    )
    log.setup(conf, PROJECT)
    return conf
