"""`python -m convnet.figures FIGURE [flags]`: one PNG per command (see convnet.figures).

Exit status: 0; 1 when some image files could not be read (each named on stderr; the figure
shows the others); 2 for bad flags and for inputs that cannot be used (checkpoint, dataset,
logs), with a one-line error.
"""
import sys

from convnet import options
from convnet.errors import run_command, shown
from convnet.figures import curves, filters, neighbours, predictions, training_error
from convnet.inference import exit_status

FIGURES = {"filters": filters, "predictions": predictions, "neighbours": neighbours,
           "curves": curves, "training-error": training_error}


def parser():
    p = options.Parser(prog="python -m convnet.figures",
                       description="The paper's figures from a trained checkpoint, "
                                   "and training curves; each writes one PNG.")
    figures = p.add_subparsers(dest="figure", required=True, metavar="FIGURE")
    commands = {}
    for name, module in FIGURES.items():
        parents = [options.shared_flags()] if module.INFERENCE else []
        command = figures.add_parser(name, parents=parents, help=module.HELP,
                                     description=module.__doc__.split("\n\n")[0])
        module.add_arguments(command)
        commands[name] = command
    return p, commands


def main(argv=None):
    p, commands = parser()
    args = p.parse_args(argv)
    module, command = FIGURES[args.figure], commands[args.figure]
    if module.INFERENCE:
        options.check_shared(command, args)
    module.check(command, args)
    if getattr(args, "output", None) is not None:   # checked before the work that makes it
        options.check_output_flag(command, args, ".png")

    def draw(args):
        path, (width, height), what, status = module.run(args)
        print(shown(f"wrote {path} ({width}×{height} pixels): {what}"))   # names in `what` too
        return status
    return exit_status(draw, args)


if __name__ == "__main__":
    sys.exit(run_command(main))
