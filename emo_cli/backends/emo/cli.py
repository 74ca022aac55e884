"""`emo weights init`, `import-hallo` and `info`: assemble, import and describe EMO weights folders.

The emo backend's contribution to the `emo` command line, registered like any plugin's in the
`emo_cli.commands` entry-point group (see pyproject.toml). Imports stay light here: torch and
diffusers load inside the commands.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

weights_app = typer.Typer(
    name="weights", help="Assemble and inspect EMO model weights.", no_args_is_help=True, rich_markup_mode=None
)


@weights_app.command("init")
def init(
    sd15: Annotated[
        str,
        typer.Option(
            "--sd15",
            help="Stable Diffusion 1.5 folder with unet/ and scheduler/ (or a hub id when online).",
            show_default=False,
        ),
    ],
    vae: Annotated[str, typer.Option("--vae", help="sd-vae-ft-mse folder (or hub id).", show_default=False)],
    motion_adapter: Annotated[
        str,
        typer.Option(
            "--motion-adapter",
            help="AnimateDiff motion adapter v1-5-2 folder (or hub id).",
            show_default=False,
        ),
    ],
    wav2vec: Annotated[
        str, typer.Option("--wav2vec", help="wav2vec2-base-960h folder (or hub id).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="The weights folder to write.", show_default=False)],
    dtype: Annotated[
        str, typer.Option(help="Store the weights as float32, float16 or bfloat16.")
    ] = "float32",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
) -> None:
    """Assemble a start-point EMO model (untrained EMO layers) from the public components."""
    from emo_cli.backends.emo.assemble import init_weights

    index = init_weights(sd15=sd15, vae=vae, motion_adapter=motion_adapter, wav2vec=wav2vec, out=out, dtype=dtype,
                         overwrite=force)  # fmt: skip
    typer.echo(f"{out}: EMO weights written (emo-weights:sha256:{index['content_sha256']})")


@weights_app.command("import-hallo")
def import_hallo(
    pretrained_dir: Annotated[
        Path, typer.Argument(help="Hallo's pretrained_models/ download folder.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="The weights folder to write.", show_default=False)],
    variant: Annotated[str, typer.Option(help="Which checkpoint: hallo (hallo/net.pth) or hallo2 (hallo2/net.pth).")]
    = "hallo",
    hallo_config: Annotated[
        Path | None,
        typer.Option("--hallo-config", help="Hallo's inference YAML, for a checkpoint trained with other "
                     "settings than its default.yaml.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out folder.")] = False,
) -> None:
    """Import Hallo's or Hallo2's checkpoint into an emo weights folder (render it with `backend: emo`)."""
    from emo_cli.backends.emo.hallo_import import import_hallo as run_import

    index = run_import(pretrained_dir, out, variant=variant, overwrite=force, hallo_config=hallo_config)
    typer.echo(f"{out}: {variant} weights imported (emo-weights:sha256:{index['content_sha256']})")


@weights_app.command("info")
def info(
    folder: Annotated[Path, typer.Argument(help="An EMO weights folder.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not re-hash the files.")] = False,
) -> None:
    """Show the parts, parameter counts, dtypes and the content hash (the weights identity).

    Exits 1 if a file no longer matches the hash recorded in the index.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from emo_cli.backends.emo.weights import weights_info

    report = weights_info(folder, verify=not no_verify)
    if as_json:
        doc = asdict(report)
        doc["root"] = str(report.root)
        typer.echo(json.dumps(doc, indent=1))
    else:
        table = Table(title=escape(str(folder)), title_justify="left")
        for column in ("part", "class", "parameters", "dtype", "bytes"):
            table.add_column(column, justify="right" if column in ("parameters", "bytes") else "left")
        for part in report.parts:
            table.add_row(
                part.name,
                part.cls.rsplit(".", 1)[-1],
                f"{part.parameters:,}",
                ",".join(part.dtypes) or "-",
                f"{part.bytes:,}",
            )
        state = "verified" if report.verified else ("not verified" if no_verify else "MISMATCH")
        Console().print(table)
        typer.echo(f"identity: {report.identity} ({state})")
    for problem in report.mismatches:
        typer.echo(problem, err=True)
    raise typer.Exit(1 if report.mismatches else 0)
