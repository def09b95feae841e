"""`python -m convnet.summary [--model NAME] [--json]`: the layer table and the cross-tower
transfers of a model, from its description alone (nothing is allocated)."""
import json
import sys

from convnet import alexnet, graph, options
from convnet.errors import run_command

BYTES_PER_ELEMENT = 4  # float32 activations
KINDS = {alexnet.Conv: "conv", alexnet.FullyConnected: "fc", alexnet.CrossMapNorm: "cross-map LRN",
         alexnet.SameMapNorm: "same-map LRN", alexnet.MaxPool: "max pool",
         alexnet.Dropout: "dropout", alexnet.SoftmaxLoss: "softmax loss"}


def summarize(model: alexnet.Model) -> dict:
    infos = graph.analyze(model)
    layers = [{
        "name": name,
        "type": KINDS[type(info.layer)],
        "tower": info.layer.tower,
        "inputs": list(info.layer.inputs),
        "activation": info.layer.activation,
        "output_shape": list(info.output_shape),
        "parameters": info.parameters,
        "multiply_adds": info.multiply_adds,
    } for name, info in infos.items()]
    transfers = [{
        "layer": edge.layer, "tensor": edge.tensor, "source": edge.source, "dest": edge.dest,
        "forward_bytes_per_image": edge.elements_per_image * BYTES_PER_ELEMENT,
        "backward_bytes_per_image": edge.elements_per_image * BYTES_PER_ELEMENT,
    } for edge in graph.cross_tower_edges(model)]
    return {
        "model": model.name,
        "preset": model.preset.name,
        "input_shape": list(model.image_shape),
        "classes": model.geometry.classes,
        "crop_draw": model.crop_draw,
        "colour_noise": model.colour_noise,
        "layers": layers,
        "total_parameters": sum(layer["parameters"] for layer in layers),
        "total_multiply_adds": sum(layer["multiply_adds"] for layer in layers),
        "transfers": transfers,
        "transfer_bytes_per_image": sum(t["forward_bytes_per_image"] + t["backward_bytes_per_image"]
                                        for t in transfers),
    }


def render(summary: dict) -> str:
    shape = "×".join(map(str, summary["input_shape"]))
    lines = [f"model {summary['model']} (preset {summary['preset']}), input {shape}, "
             f"{summary['classes']} classes",
             f"training images: crop draw {summary['crop_draw']}, colour noise "
             f"{summary['colour_noise'] or 'none'}", ""]
    header = f"{'layer':<8} {'type':<18} {'tower':<5} {'inputs':<16} {'output':<14} " \
             f"{'parameters':>12} {'mult-adds':>13}"
    lines += [header, "-" * len(header)]
    for layer in summary["layers"]:
        kind = layer["type"] + (f" + {layer['activation']}" if layer["activation"] else "")
        lines.append(f"{layer['name']:<8} {kind:<18} {layer['tower']:<5} "
                     f"{','.join(layer['inputs']):<16} "
                     f"{'×'.join(map(str, layer['output_shape'])):<14} "
                     f"{layer['parameters']:>12,} {layer['multiply_adds']:>13,}")
    lines += ["-" * len(header),
              f"total parameters {summary['total_parameters']:,}; forward multiply-adds "
              f"{summary['total_multiply_adds'] / 1e6:.1f} M per image", "",
              "cross-tower transfers (float32, per image):",
              f"{'layer':<8} {'reads':<8} {'from':<5} {'to':<5} {'forward':>10} {'backward':>10}"]
    for t in summary["transfers"]:
        lines.append(f"{t['layer']:<8} {t['tensor']:<8} {t['source']:<5} {t['dest']:<5} "
                     f"{t['forward_bytes_per_image']:>10,} {t['backward_bytes_per_image']:>10,}")
    lines.append(f"total {summary['transfer_bytes_per_image']:,} bytes per image per training step")
    return "\n".join(lines)


def main(argv=None):
    parser = options.Parser(prog="python -m convnet.summary", description=__doc__)
    parser.add_argument("--model", default=alexnet.DEFAULT_MODEL, type=options.model_choice,
                        help=f"one of: {', '.join(alexnet.MODELS)}, optionally with +ablation "
                             f"suffixes ({', '.join(alexnet.ABLATIONS)}); default "
                             f"{alexnet.DEFAULT_MODEL}")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    summary = summarize(alexnet.build_model(args.model))
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
