"""Building the one configuration object that every entry point passes on."""

from __future__ import annotations

from collections.abc import Sequence

from oslo_config import cfg
from oslo_log import log

from panko_collector import __version__

PROJECT = "panko-collector"

#: Option groups and their options, as ``opts.list_opts`` gives them.
OptionGroups = Sequence[tuple[str | None, Sequence[cfg.Opt]]]


def register_opts(conf: cfg.ConfigOpts, groups: OptionGroups | None = None) -> None:
    """Register ``groups`` on ``conf``; by default every option of the project."""
    if groups is None:
        # Imported here: it imports every module of the daemon.
        from panko_collector import opts

        groups = opts.list_opts()
    for group, options in groups:
        conf.register_opts(list(options), group=group)


def prepare_service(
    argv: Sequence[str] | None = None,
    config_files: Sequence[str] | None = None,
    cli_opts: Sequence[cfg.Opt] = (),
    groups: OptionGroups | None = None,
) -> cfg.ConfigOpts:
    """Return a fresh, parsed configuration with logging set up.

    ``argv`` excludes the program name. Without ``--config-file`` the usual
    places are searched (``/etc/panko-collector/panko-collector.conf`` and
    the like); none is required. ``groups`` limits the options registered
    to those a command reads (the others in the files are then ignored),
    so that it need not import the whole daemon; by default all of them.
    """
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    register_opts(conf, groups)
    conf.register_cli_opts(list(cli_opts))
    conf(
        list(argv) if argv is not None else None,
        project=PROJECT,
        version=__version__,
        default_config_files=list(config_files) if config_files is not None else None,
    )
    log.setup(conf, PROJECT)
    return conf
