#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes the image fixtures of io/image.hpp and vision/preprocess.hpp with PIL and torchvision:
the reference for timm's eval pipeline of EfficientViT (Resize(256, BICUBIC), CenterCrop(224),
ToTensor, Normalize(ImageNet mean, std)).

Usage (from anywhere; Debian's python3-pil, python3-numpy and python3-torchvision, hence the
system interpreter rather than a venv):

    /usr/bin/python3 tools/make_image_fixtures.py

Writes tests/fixtures/vision/images/ (about 390 KB in all; reruns give the same files):

    landscape_320x240.png      RGB source (downscaled by Resize(256) to 341x256)
    portrait_150x200.png       RGB source (upscaled to 256x341)
    square_256x256.png         RGB source (already 256: torchvision returns it unresized)
    grey_160x120.png           mode L source (convert('RGB') replicates the grey level)
    rgba_120x160.png           mode RGBA source (convert('RGB') drops alpha)
    grey_160x120_rgb.png, rgba_120x160_rgb.png
                               PIL's convert('RGB') of those two
    la_16x12.png, la_16x12_rgb.png
                               mode LA source and PIL's convert('RGB') of it
    NAME_ref224.png            Resize(256, BICUBIC) + CenterCrop(224) of NAME.convert('RGB')
                               by torchvision on the PIL image (PIL's resampler), lossless
    landscape_320x240_resize_77x53.png, landscape_320x240_resize_500x31.png
                               PIL Image.resize((w, h), BICUBIC) alone: strong downscale (support
                               scaled by 4.2) and mixed up/down, to test the resampler beyond 256
    landscape_320x240_q90.jpg  JPEG quality 90 (PIL's default 4:2:0 subsampling)
    landscape_320x240_q90_444.jpg
                               JPEG quality 90, 4:4:4 (no chroma upsampling in the decoder)
    *_pil.png                  PIL's (libjpeg-turbo's) decode of each JPEG, lossless
    preprocess.json            per pipeline fixture: source size, resized size, crop offsets;
                               for landscape and portrait 200 sampled (c, y, x, value) entries of
                               the final float32 tensor (ToTensor + Normalize) and its per-channel
                               mean (float64 sums), so the C++ test checks /255 and (x-mean)/std

and the seeds of the fuzz_image corpus, tests/fuzz/corpus_image/ (under 2 KB in all): an 8x6 RGB
PNG, a 5x4 palette PNG with tRNS, a 6x4 16-bit grey PNG, a 16x16 baseline JPEG (4:2:0) and a
16x8 progressive JPEG.

The source images are synthetic: smooth gradients, sharp edges (a disc, bars, a diagonal step)
and a noise patch (uniform +-24 levels in one 40x40 square, so PNG stays small). If torchvision
is not importable, the two transforms are replicated here with PIL (Image.resize with the size
rule of torchvision 0.14's _compute_resized_output_size, then the crop with round-half-even
offsets) and a note says so.
"""
import json
import pathlib
import re

import numpy as np
from PIL import Image

try:
    import torch
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    HAVE_TV = True
except ImportError:  # pragma: no cover - fallback described in the docstring
    HAVE_TV = False

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "vision" / "images"
FUZZ = ROOT / "tests" / "fuzz" / "corpus_image"
RESIZE, CROP = 256, 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def synthetic(w: int, h: int, seed: int) -> np.ndarray:
    """(h, w, 3) uint8: gradients, a disc, bars, a diagonal step and a noise patch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(2 * np.pi * (x + y) / (0.7 * (w + h) / 2))
    img = np.stack([r, g, b], axis=-1)
    disc = (x - 0.62 * w) ** 2 + (y - 0.4 * h) ** 2 < (0.18 * min(w, h)) ** 2
    img[disc] = (250, 30, 40)
    bars = (y > 0.75 * h) & (y < 0.9 * h) & ((x // 3) % 2 == 0)
    img[bars] = (0, 0, 0)
    img[(x + 2 * y < 0.5 * w) & (y > 0.1 * h)] = (255, 255, 255)
    y0, x0 = int(0.15 * h), int(0.2 * w)
    patch = img[y0:y0 + 40, x0:x0 + 40]
    patch += rng.uniform(-24, 24, size=patch.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def resized_size(w: int, h: int, size: int):
    """torchvision 0.14 _compute_resized_output_size for an int size: shorter side -> size,
    longer side -> int(size * long / short) (truncation)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def crop_offsets(w: int, h: int, crop: int):
    return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))


def pipeline_uint8(img: Image.Image) -> Image.Image:
    """Resize(256, BICUBIC) + CenterCrop(224) of an RGB PIL image."""
    if HAVE_TV:
        t = transforms.Compose([transforms.Resize(RESIZE, interpolation=InterpolationMode.BICUBIC),
                                transforms.CenterCrop(CROP)])
        return t(img)
    w, h = resized_size(*img.size, RESIZE)
    if (w, h) != img.size:
        img = img.resize((w, h), Image.BICUBIC)
    top, left = crop_offsets(w, h, CROP)
    return img.crop((left, top, left + CROP, top + CROP))


def normalised(img: Image.Image) -> np.ndarray:
    """(3, 224, 224) float32: ToTensor + Normalize."""
    if HAVE_TV:
        t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
        return t(img).numpy()
    a = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
    m = np.array(MEAN, dtype=np.float32)[:, None, None]
    s = np.array(STD, dtype=np.float32)[:, None, None]
    return ((a - m) / s).astype(np.float32)


def save_png(img: Image.Image, name: str):
    img.save(OUT / name, format="PNG", optimize=True)


def fuzz_seeds():
    """Five tiny seeds of the fuzz_image corpus, one per decoder path worth mutating."""
    FUZZ.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(synthetic(16, 16, 7), "RGB")
    rgb.crop((0, 0, 8, 6)).save(FUZZ / "rgb_8x6.png")
    pal = rgb.crop((0, 0, 5, 4)).quantize(4)
    pal.info["transparency"] = 0
    pal.save(FUZZ / "palette_trns_5x4.png", transparency=0)
    grey16 = (np.arange(24, dtype=np.uint16).reshape(4, 6) * 2731).astype(np.uint16)
    Image.fromarray(grey16).save(FUZZ / "grey16_6x4.png")
    rgb.save(FUZZ / "q90_16x16.jpg", quality=90)
    rgb.crop((0, 0, 16, 8)).save(FUZZ / "progressive_16x8.jpg", quality=75, progressive=True)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"generator": "tools/make_image_fixtures.py",
            "torchvision": HAVE_TV and __import__("torchvision").__version__,
            "pil": Image.__version__, "resize": RESIZE, "crop": CROP, "mean": MEAN, "std": STD,
            "pipeline": {}}
    if not HAVE_TV:
        print("note: torchvision not importable; Resize/CenterCrop/ToTensor/Normalize replicated with PIL + numpy")

    land = Image.fromarray(synthetic(320, 240, 1), "RGB")
    sources = {
        "landscape_320x240": land,
        "portrait_150x200": Image.fromarray(synthetic(150, 200, 2), "RGB"),
        "square_256x256": Image.fromarray(synthetic(256, 256, 3), "RGB"),
        "grey_160x120": Image.fromarray(synthetic(160, 120, 4), "RGB").convert("L"),
    }
    rgba = synthetic(120, 160, 5)
    yy, xx = np.mgrid[0:160, 0:120]
    alpha = ((xx * 2 + yy) % 256).astype(np.uint8)  # a varying alpha, dropped by convert('RGB')
    sources["rgba_120x160"] = Image.fromarray(np.dstack([rgba, alpha]), "RGBA")

    samples_rng = np.random.default_rng(11)
    for name, src in sources.items():
        save_png(src, name + ".png")
        rgb = Image.open(OUT / (name + ".png")).convert("RGB")  # what a loader does
        if src.mode != "RGB":
            save_png(rgb, name + "_rgb.png")  # PIL's convert('RGB'), for the decoder's test
        out = pipeline_uint8(rgb)
        assert out.size == (CROP, CROP)
        save_png(out, name + "_ref224.png")
        w, h = resized_size(*rgb.size, RESIZE)
        top, left = crop_offsets(w, h, CROP)
        entry = {"source": [rgb.size[1], rgb.size[0]], "resized": [h, w], "crop_top_left": [top, left]}
        if name in ("landscape_320x240", "portrait_150x200"):
            t = normalised(out)
            idx = [(int(c), int(y), int(x)) for c, y, x in zip(samples_rng.integers(0, 3, 200),
                                                              samples_rng.integers(0, CROP, 200),
                                                              samples_rng.integers(0, CROP, 200))]
            idx[:4] = [(0, 0, 0), (1, 0, CROP - 1), (2, CROP - 1, 0), (0, CROP - 1, CROP - 1)]
            entry["samples"] = [[c, y, x, float(t[c, y, x])] for c, y, x in idx]
            entry["channel_mean"] = [float(t[c].astype(np.float64).mean()) for c in range(3)]
        meta["pipeline"][name] = entry

    la = Image.fromarray(synthetic(16, 12, 6), "RGB").convert("L")
    la.putalpha(Image.fromarray((np.arange(16 * 12).reshape(12, 16) % 251).astype(np.uint8), "L"))
    assert la.mode == "LA"
    save_png(la, "la_16x12.png")
    save_png(Image.open(OUT / "la_16x12.png").convert("RGB"), "la_16x12_rgb.png")

    for w, h in ((77, 53), (500, 31)):
        save_png(land.resize((w, h), Image.BICUBIC), f"landscape_320x240_resize_{w}x{h}.png")

    for suffix, sub in (("q90", None), ("q90_444", 0)):
        kw = {"quality": 90} if sub is None else {"quality": 90, "subsampling": sub}
        land.save(OUT / f"landscape_320x240_{suffix}.jpg", format="JPEG", **kw)
        save_png(Image.open(OUT / f"landscape_320x240_{suffix}.jpg").convert("RGB"),
                 f"landscape_320x240_{suffix}_pil.png")

    text = json.dumps(meta, indent=1)
    # one line per innermost list (a sample, a size), so the file stays short and readable
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    (OUT / "preprocess.json").write_text(text + "\n")
    fuzz_seeds()
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total / 1024:.0f} KB, to {OUT}")


if __name__ == "__main__":
    main()
