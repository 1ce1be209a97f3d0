"""Every environment variable the processes read, with its default: `python -m devtools.settings_doc`.

The README's configuration table is this output; a test checks the README names every variable.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from shared.settings import CommonSettings


def settings_classes() -> list[tuple[str, type[CommonSettings], str]]:
    from gateway.settings import GatewaySettings
    from services.auth.settings import AuthSettings
    from services.canvas.settings import CanvasSettings

    return [
        ("all", CommonSettings, ""),
        ("auth", AuthSettings, "AUTH_"),
        ("canvas", CanvasSettings, "CANVAS_"),
        ("gateway", GatewaySettings, "GATEWAY_"),
    ]


def variables() -> Iterator[tuple[str, str, str]]:
    """(process, VARIABLE, default) for every setting; shared ones once, under `all`."""
    for process, cls, prefix in settings_classes():
        shared = CommonSettings.__shared_fields__
        for field in msgspec.structs.fields(cls):
            if field.name in shared and process != "all":
                continue
            name = field.name.upper() if field.name in shared else f"{prefix}{field.name}".upper()
            if field.default is not msgspec.NODEFAULT:
                value = field.default
            elif field.name == "consumer_name":
                value = "<hostname>-<pid>"
            else:
                value = field.default_factory()  # type: ignore[misc]
            default = value if isinstance(value, str) else msgspec.json.encode(value).decode().strip('"')
            yield process, name, default


if __name__ == "__main__":
    print("| variable | process | default |\n|---|---|---|")
    for process, name, default in variables():
        print(f"| `{name}` | {process} | `{default}` |")
