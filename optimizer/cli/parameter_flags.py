"""The ``merge`` command's flags for merge-method parameters, made from the methods' declarations
(``evaluators.merge.parameters``), so a new method's parameter is a new flag without editing the CLI.

Imported by the CLI at start-up; ``evaluators.merge`` (torch) only when the merge command is parsed.
"""

from __future__ import annotations

import argparse


class ParameterFlag(argparse.Action):
    """Stores a merge parameter's value; notes a former spelling (``--scale``) for one deprecation line."""

    def __call__(self, parser, namespace, values, option_string=None):
        """argparse's hook: store the value under ``parameter:NAME`` and record the flag when it was a former
        spelling; one parameter under two spellings (``--lambda`` and ``--scale``) is refused."""
        spelled = getattr(namespace, "parameter_flags", {})
        if option_string is not None and spelled.get(self.dest, option_string) != option_string:
            name = self.dest.removeprefix("parameter:")
            parser.error(
                f"argument {option_string}: not allowed with {spelled[self.dest]} (both set '{name}'; give --{name} once)"
            )
        namespace.parameter_flags = {**spelled, self.dest: option_string}
        setattr(namespace, self.dest, values)
        if option_string is not None and option_string[2:] != self.dest.removeprefix("parameter:"):
            namespace.former_flags = [*getattr(namespace, "former_flags", []), option_string]


def add_parameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per merge-method parameter, from the methods' declarations (``--lambda``; ``--scale``, its
    former spelling, still parses but is left out of the help)."""
    from evaluators.merge import declared_parameters

    for param in declared_parameters().values():
        former = [f"--{name}" for name in param.formerly]
        options = {"dest": f"parameter:{param.name}", "type": int if param.integer else float, "action": ParameterFlag}
        parser.add_argument(
            f"--{param.name}",
            metavar=param.name.upper(),
            help=param.help + (f" (formerly {', '.join(former)})" if former else ""),
            **options,  # type: ignore[arg-type]
        )
        if former:
            parser.add_argument(*former, help=argparse.SUPPRESS, **options)  # type: ignore[arg-type]


def given_parameters(args: argparse.Namespace) -> dict[str, float]:
    """The parameter flags given, by parameter name; a former spelling logs one deprecation line."""
    from evaluators.merge import declared_parameters

    declared = declared_parameters()
    for flag in getattr(args, "former_flags", []):
        next(p for p in declared.values() if p.spelled(flag[2:])).deprecated(flag[2:], "mergefront merge")
    given = {name: getattr(args, f"parameter:{name}", None) for name in declared}
    return {name: value for name, value in given.items() if value is not None}
