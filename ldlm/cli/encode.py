"""ldlm encode"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ldlm.cli.app import command
from ldlm.cli.console import RichReporter
from ldlm.cli.options import Data, Device, Split, TextColumn
from ldlm.distributed import pick_device, ranks
from ldlm.recipe import CHUNK_ROWS, ENCODE_BATCH, SPLIT, TEXT_COLUMN


@command("encode")
def encode_cmd(
    data: Data,
    autoencoder: Annotated[Path, typer.Option(help="Autoencoder folder (train-autoencoder --out).")],
    store: Annotated[str, typer.Option(help="Zarr store to write: a path or an fsspec URL.")],
    text_column: TextColumn = TEXT_COLUMN,
    split: Split = SPLIT,
    condition_column: Annotated[str | None, typer.Option(
        help="Column to keep beside each text as its condition (class label or conditioning "
        "text), for `ldlm train --conditional`.")] = None,
    condition_type: Annotated[Literal["label", "text"], typer.Option(
        help="label: a categorical vocabulary; text: a conditioning text (e.g. E2E's mr column), "
        "stored as word token ids that the denoiser encodes.")] = "label",
    batch_size: Annotated[int, typer.Option(help="Texts encoded together.")] = ENCODE_BATCH,
    chunk_rows: Annotated[int, typer.Option(help="Rows per store chunk (resume unit).")] = CHUNK_ROWS,
    limit: Annotated[int | None, typer.Option(help="Encode only the first N usable rows.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    device: Device = None,
) -> None:
    """Encode a text dataset into a zarr latent store. Interrupted runs resume where they
    stopped when run again with the same arguments."""
    if condition_column is None and condition_type != "label":
        from ldlm.errors import InputError

        raise InputError(f"--condition-type {condition_type} needs --condition-column COL; add it "
                         "or drop --condition-type")
    from ldlm.outputs import check_output
    from ldlm.store import store_location

    store = store_location(store)  # file:// -> a local path; an uninstalled protocol is refused here
    check_output(store, "--store", "store", {"DATA": data, "--autoencoder": autoencoder})
    from ldlm.data import load_texts
    from ldlm.encode import encode_dataset

    reporter = RichReporter()
    rows = load_texts(data, text_column=text_column, split=split, limit=limit,
                      condition_column=condition_column)
    if rows.conditions is not None and condition_type == "label":
        from ldlm.conditions import texts_as_labels

        warning = texts_as_labels(rows.conditions, condition_column)
        if warning and ranks().is_main:
            typer.echo(f"warning: {warning}", err=True)
    result = encode_dataset(rows, autoencoder, store, batch_size=batch_size, chunk_rows=chunk_rows,
                            limit=limit, overwrite=overwrite, device=pick_device(device),
                            reporter=reporter, condition_type=condition_type,
                            condition_column=condition_column)
    if not ranks().is_main:  # under `accelerate launch`, the main process speaks for all
        return
    if result.skipped:
        reporter.log(f"skipped {result.skipped} rows that are empty or not text")
    if result.truncated:
        reporter.log(f"warning: {result.truncated} rows were longer than the "
                     "autoencoder's max length and were truncated")
    k, d = result.store.latent_shape
    note = "already complete" if result.encoded == 0 else f"encoded {result.encoded} rows"
    typer.echo(f"{store}: {result.rows} rows of {k} x {d} latents ({note})")
