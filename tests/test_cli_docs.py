"""Every driftnet command documents itself: --help works and shows an example."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from driftnet.cli import main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out += _commands(command, (*prefix, name))
    return out


COMMANDS = _commands(main)


def test_the_expected_commands_exist() -> None:
    assert {("sql",), ("discover",), ("export",), ("up",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_help_has_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"driftnet {' '.join(path)} --help shows no example"
    example = result.output.split("Example", 1)[1]
    assert f"driftnet {' '.join(path)}" in example
    for param in main.get_command(click.Context(main), path[0]).params:  # type: ignore[union-attr]
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{path} option {param.opts} has no help"


def test_top_level_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for (name,) in [p for p in COMMANDS if len(p) == 1]:
        assert name in result.output
