"""inception-eval: accuracy of eager PyTorch and artifacts on a labelled image set."""

from __future__ import annotations

import sys

import click

from ..fileio import write_json
from ..metadata import MAX_BATCH
from ..runtime.base import DEVICES
from .guard import EXIT_NO_ENGINE, EXIT_PARTLY_FAILED, one_line_errors
from .options import check_ray_options, command, option, ray_options
from .output import announce, check_outputs, images_bar, opens_with, print_evaluation


@command("eval")
@option(
    "--data",
    required=True,
    type=click.Path(),
    group="Data",
    help="Labelled images: a folder of class subfolders, a CSV/TSV of path,label, or a folder of images "
    "with --ground-truth. Classes are the model's labels, ImageNet WNIDs, or (CSV) indices.",
)
@option(
    "--ground-truth",
    type=click.Path(dir_okay=False),
    group="Data",
    help="For a folder of images: name,label rows (ImageNet: Caffe's val.txt or Kaggle's LOC_val_solution.csv).",
)
@option(
    "--class-map",
    type=click.Path(dir_okay=False),
    group="Data",
    help="Rows 'data set class,model class' for classes named otherwise than the model's labels.",
)
@option("--limit", type=click.IntRange(min=1), group="Data", help="At most this many images, spread over the set.")
@option("--arch", metavar="NAME", group="Models", help="Evaluate eager PyTorch too, as the reference.")
@option("--weights", metavar="FILE|pretrained", group="Models", help="With --arch: its checkpoint.")
@option(
    "--onnx", multiple=True, type=click.Path(dir_okay=False), group="Models", help="An .onnx to evaluate (repeatable)."
)
@option(
    "--engine",
    multiple=True,
    type=click.Path(dir_okay=False),
    group="Models",
    help="A TensorRT engine to evaluate (repeatable).",
)
@option("--device", type=click.Choice(DEVICES), default="auto", group="Backend", help="Where .onnx files run.")
@option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=8, group="Backend", help="Images per call.")
@option(
    "--workers",
    type=click.IntRange(1, 1024),
    group="Backend",
    help="Decoding threads; with --ray, actors.  [default: min(4, CPUs); ray: 2]",
)
@option("--json", "json_out", type=click.Path(dir_okay=False), group="Output", help="Write the report as JSON.")
@option(
    "--plot",
    type=click.Path(dir_okay=False),
    group="Output",
    help="Accuracy against throughput per model (PNG; needs the bench extra).",
)
@option("--no-progress", is_flag=True, group="Output", help="No progress bar on stderr.")
@ray_options("Decode and classify")
@one_line_errors
@opens_with("loading PyTorch and the models...", loading="torch")
def eval_command(
    data,
    ground_truth,
    class_map,
    limit,
    arch,
    weights,
    onnx,
    engine,
    device,
    batch_size,
    workers,
    json_out,
    plot,
    no_progress,
    use_ray,
    ray_address,
    cpus_per_worker,
):
    """Accuracy of eager PyTorch and each artifact on a labelled image set, on exactly the same images:
    top-1/top-5 with 95% intervals, the difference to the reference with McNemar's test, agreement,
    images/s and the classes that lose most. Exit 1 when an image could not be used (as inception-run), 3 when
    an engine cannot run here."""
    from ..verify.evaluation import EVAL_REPORT, evaluate, plot_accuracy  # torch: only when the command runs

    if arch is None and not onnx and not engine:
        raise click.UsageError("give --arch (eager PyTorch) and/or --onnx / --engine artifacts to evaluate")
    if weights is not None and arch is None:
        raise click.UsageError("--weights needs --arch")
    check_ray_options(use_ray, ray_address=ray_address, cpus_per_worker=cpus_per_worker)
    check_outputs([data, ground_truth, class_map, weights, *onnx, *engine], json_out, EVAL_REPORT, plot)
    classify = None
    if use_ray:  # --workers: actors; each decodes and classifies its batches itself
        from ..batch import RayOptions, on_ray

        classify = on_ray(RayOptions(ray_address, workers or 2, cpus_per_worker or 1.0))
    with images_bar(disable=no_progress) as progress:
        report = evaluate(
            data,
            artifacts=list(onnx) + list(engine),
            arch=arch,
            weights=weights,
            device=device,
            limit=limit,
            batch_size=batch_size,
            class_map=class_map,
            ground_truth=ground_truth,
            workers=workers,
            progress=progress,
            classify=classify,
        )
    print_evaluation(report)
    if json_out:
        write_json(json_out, report.to_dict(), EVAL_REPORT)
        announce(f"wrote {json_out}")
    if plot:
        plot_accuracy(report, plot)
        announce(f"wrote {plot}")
    if report.skipped:
        sys.exit(EXIT_PARTLY_FAILED)
    if report.not_run:
        sys.exit(EXIT_NO_ENGINE)
