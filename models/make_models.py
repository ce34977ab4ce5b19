"""Make the full-size benchmark models models/resnet50.onnx and models/bert-base.onnx.

What (random weights, no hub access, fixed seeds):
  * resnet50.onnx: torchvision.models.resnet50(weights=None) (random init) with
    noise on every BatchNorm weight/bias/running_mean/running_var and fc bias.
    TorchScript exporter (dynamo=False), opset 17, constant folding on,
    training=TrainingMode.PRESERVE with the model in eval() so the 53
    BatchNormalization nodes are kept (EVAL mode would fold them into Conv).
    Input "input" float32 [batch, 3, 224, 224] (batch dynamic),
    output "logits" float32 [batch, 1000].
  * bert-base.onnx: transformers BertModel(BertConfig()) (bert-base-uncased
    sizes: 12 layers, hidden 768, 12 heads, intermediate 3072, vocab 30522,
    512 positions; random init plus noise on biases/LayerNorm), eval mode,
    called through a keyword wrapper. TorchScript exporter, opset 14
    (GELU as Div/Erf/Add/Mul/Mul, LayerNorm decomposed), constant folding on.
    Inputs input_ids / attention_mask / token_type_ids int64 [batch, sequence]
    (both dims dynamic); outputs last_hidden_state float32 [batch, sequence, 768]
    and pooler_output float32 [batch, 768].
Both files are single-file ONNX (weights inline, < 2 GB, no .onnx.data).
Each model is checked in onnxruntime against torch, and its op histogram and
fusible-pattern counts (fixtures/onnx_patterns.py) are printed.

How: python3 models/make_models.py [resnet50] [bert-base]
     (from the repo root; no argument = both). See models/README.md.
"""
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
from onnx_patterns import describe  # noqa: E402


def _noise_bn_linear(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=g))
                mod.bias.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=g))
            elif isinstance(mod, torch.nn.Linear):
                mod.weight.add_(0.01 * torch.randn(mod.weight.shape, generator=g))
                if mod.bias is not None:
                    mod.bias.copy_(0.05 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(1.0 + 0.1 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.05 * torch.randn(mod.bias.shape, generator=g))
    return model


def _check(path, feeds, ref, rtol):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out = sess.run(None, {k: v.numpy() for k, v in feeds.items()})
    for o, r in zip(out, ref):
        r = r.numpy()
        err = float(np.abs(o - r).max())
        scale = float(np.abs(r).max())
        print(f"  ort vs torch {o.shape}: max abs err {err:.3e} (max |ref| {scale:.3e})")
        assert o.shape == r.shape and err <= rtol * max(1.0, scale), path


def make_resnet50():
    import torchvision

    path = os.path.join(HERE, "resnet50.onnx")
    torch.manual_seed(0)
    model = _noise_bn_linear(torchvision.models.resnet50(weights=None), seed=1).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), path, dynamo=False, opset_version=17, do_constant_folding=True,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    assert not model.training
    xb = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = [model(xb)]
    _check(path, {"input": xb}, ref, rtol=1e-4)
    return path


class BertWrapper(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        o = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return o.last_hidden_state, o.pooler_output


def make_bert_base():
    from transformers import BertConfig, BertModel

    path = os.path.join(HERE, "bert-base.onnx")
    torch.manual_seed(0)
    cfg = BertConfig()
    model = BertWrapper(_noise_bn_linear(BertModel(cfg), seed=1)).eval()

    def inputs(b, s, seed):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, cfg.vocab_size, (b, s), generator=g)
        mask = torch.ones(b, s, dtype=torch.long)
        if b > 1:
            mask[-1, s - s // 4:] = 0
        tt = torch.zeros(b, s, dtype=torch.long)
        tt[:, s // 2:] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt}

    ex = inputs(2, 16, 5)
    names = list(ex)
    axes = {k: {0: "batch", 1: "sequence"} for k in names + ["last_hidden_state"]}
    axes["pooler_output"] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, tuple(ex.values()), path, dynamo=False, opset_version=14, do_constant_folding=True,
            input_names=names, output_names=["last_hidden_state", "pooler_output"], dynamic_axes=axes,
        )
    feeds = inputs(2, 128, 6)
    with torch.no_grad():
        ref = list(model(**feeds))
    _check(path, feeds, ref, rtol=1e-4)
    return path


MAKERS = {"resnet50": make_resnet50, "bert-base": make_bert_base}


def main(argv):
    which = argv or list(MAKERS)
    t_all = time.perf_counter()
    for name in which:
        t0 = time.perf_counter()
        path = MAKERS[name]()
        dt = time.perf_counter() - t0
        m, _ = describe(path, show_matches=False)
        onnx.checker.check_model(path)
        assert not os.path.exists(path + ".data"), "unexpected external data"
        print(f"  {name}: export + ort check took {dt:.1f} s")
    print(f"total {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
