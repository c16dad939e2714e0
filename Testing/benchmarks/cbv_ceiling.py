"""How much of the brain phantom's CBV can any model predict? An oracle's SSIM against the true CBV.

The phantom's CBV has parts that no MRI input shows: the grey-matter heterogeneity field, part of
the tumour rim's CBV field, the medullary and tumour neovessel trees, the vessel amplitudes, the
absolute white-matter CBV and the DSC noise. The oracle knows every tissue fraction, the rim
cellularity texture and the cortical vessel tree (these shape T2, FLAIR and ADC), and puts the
expectation in place of each hidden field. Three oracles: one that also knows the per-subject scalars
(vessel amplitudes, tissue CBVs; optimistic), one that uses their expected values, and one that in
addition does not know where the cortical vessels run (their expected density everywhere in the cortex):
the gap between the last two is what reading the vessels' flow voids is worth. Metrics are the
benchmark's (``synthlab.hiersynth.evaluation.cbv_metrics``), so the numbers bound what a perfect
network could score on ``cbv_benchmark.py``.

    .venv/bin/python Testing/benchmarks/cbv_ceiling.py --first-seed 100 --cases 6
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import SimpleITK as sitk

from synthlab.hiersynth.evaluation import cbv_metrics
from synthlab.phantoms import brain
from synthlab.phantoms.fields import blur, smooth_noise
from synthlab.phantoms.mri import WM_CBV_RANGE

VESSELS = ("cortical", "medullary", "neovessels")


class CBVInternals:
    """Catches the phantom's CBV inputs (and a copy of its random state) while a case is generated."""

    def __init__(self):
        self.arguments, self.rng, self.sigma = None, None, None
        self._cbv, self._blur = brain._cbv, brain.blur

    def __enter__(self):
        def cbv(fractions, tissues, textures, cortical, rng):
            self.arguments, self.rng = (fractions, tissues, textures, cortical), copy.deepcopy(rng)
            return self._cbv(fractions, tissues, textures, cortical, rng)

        def psf(values, sigma):
            if self.arguments is not None and self.sigma is None:
                self.sigma = sigma
            return self._blur(values, sigma)

        brain._cbv, brain.blur = cbv, psf
        return self

    def __exit__(self, *exc):
        brain._cbv, brain.blur = self._cbv, self._blur

    def oracle(self, known_scalars: bool, knows_vessel_tree: bool = True) -> np.ndarray:
        """The expected CBV given what the inputs show (and, with ``known_scalars``, the subject's scalars).
        Without ``knows_vessel_tree`` the cortical vessel tree is replaced by its mean density."""
        fractions, tissues, textures, cortical = self.arguments
        cortical_tree = textures.cortical_vessels if knows_vessel_tree else textures.cortical_vessels.mean()
        rng = copy.deepcopy(self.rng)
        for scale in (6.0, 2.0):  # the hidden heterogeneity and rim fields: drawn only to keep the stream
            smooth_noise(fractions["gm"].shape, scale, rng)
        amplitudes = [rng.uniform(*brain.VESSEL_CBV[name]) for name in VESSELS]
        scale = 1.0
        if not known_scalars:
            amplitudes = [np.mean(brain.VESSEL_CBV[name]) for name in VESSELS]
            scale = np.mean(WM_CBV_RANGE) / tissues["wm"].cbv

        def cbv(name):
            return tissues[name].cbv * scale

        rim = cbv("rim") * np.exp(brain.RIM_CBV_SPREAD * brain.RIM_CBV_TEXTURE * textures.rim
                                  - brain.RIM_CBV_SPREAD ** 2 / 2 + (brain.RIM_CBV_SPREAD * brain.RIM_CBV_HIDDEN) ** 2 / 2)
        expected = (fractions["gm"] * cbv("gm") * np.exp(brain.GM_CBV_SPREAD ** 2 / 2) + fractions["wm"] * cbv("wm")
                    + fractions["oedema"] * cbv("oedema") + fractions["core"] * cbv("core") + fractions["rim"] * rim
                    + amplitudes[0] * scale * cortical_tree * cortical
                    + amplitudes[1] * scale * textures.medullary_vessels.mean() * fractions["wm"]
                    + amplitudes[2] * cbv("rim") * textures.neovessels.mean() * fractions["rim"])
        return blur(expected, self.sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--cases", type=int, default=6)
    arguments = parser.parse_args()
    oracles = {"knows the subject's scalars": (True, True), "expected scalars": (False, True),
               "expected scalars, cortical vessel tree unknown": (False, False)}
    scores = {name: [] for name in oracles}
    for seed in range(arguments.first_seed, arguments.first_seed + arguments.cases):
        with CBVInternals() as internals:
            case = brain.generate_case(seed, "small", with_tumour=True)
        truth, mask, tumour = (sitk.GetArrayFromImage(image) for image in
                               (case.images["cbv"], case.mask, case.labels.image))
        mask = mask.astype(bool)
        for name, (known_scalars, knows_vessel_tree) in oracles.items():
            oracle = internals.oracle(known_scalars, knows_vessel_tree)
            metrics = cbv_metrics(oracle * mask, truth, mask, tumour > 0)
            scores[name].append([metrics[key] for key in ("ssim_brain", "ssim_tumour", "psnr", "mae")])
    print(f"{arguments.cases} phantom cases with tumours (seeds {arguments.first_seed}…), mean over cases:\n")
    print("| oracle | SSIM brain | SSIM tumour ROI | PSNR dB | MAE |")
    print("|---|---|---|---|---|")
    for name, rows in scores.items():
        means = np.mean(rows, axis=0)
        print(f"| {name} | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.2f} | {means[3]:.3f} |")


if __name__ == "__main__":
    main()
