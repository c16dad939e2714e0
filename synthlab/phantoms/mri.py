"""Tissue properties at 3 T and the MRI signal equations the brain phantom images them with.

Values (drawn per subject within the ranges, so contrasts vary like they do between patients):

* T1/T2 of grey and white matter at 3 T: Stanisz et al., MRM 2005 (WM T1 1084 ms, T2 69 ms; GM T1
  1820 ms, T2 99 ms). CSF: T1 about 4.3 s, T2 about 2 s (Lu et al., JMRI 2005; free water at 37 °C).
* Proton density relative to CSF: WM 0.69–0.77, GM 0.80–0.86 (the BrainWeb simulator's tissue
  values, Kwan et al. 1999, and water-content measurements).
* ADC (10⁻⁶ mm²/s): WM about 700, GM about 800 (Helenius et al. 2002), CSF about 3000 (free water).
* CBV (ml/100 g, DSC): GM about twice WM, WM about 2–2.5 (Leenders 1990, PET; Helenius 2003, DSC);
  CSF none.
* Glioblastoma compartments (ranges typical of published measurements): vasogenic oedema has long T1
  and T2 (FLAIR-bright), ADC 1100–1700 and CBV a little below WM; the enhancing/solid rim has
  T2 100–160 ms, ADC 850–1250 and rCBV 2.5–6× WM; necrosis is fluid-like (T1 2.4–3.8 s, T2 250–800 ms),
  ADC 1600–2600 and CBV near zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TISSUES = ("csf", "gm", "wm", "oedema", "rim", "core")

# name: (T1 ms, T2 ms, PD, ADC 1e-6 mm2/s, CBV ml/100 g as a multiple of WM CBV); each is a (low, high) range.
PROPERTY_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "csf": {"t1": (4000, 4500), "t2": (1500, 2200), "pd": (1.0, 1.0), "adc": (2900, 3200), "cbv": (0.0, 0.0)},
    "gm": {"t1": (1650, 1950), "t2": (90, 110), "pd": (0.80, 0.86), "adc": (760, 880), "cbv": (1.8, 2.4)},
    "wm": {"t1": (950, 1150), "t2": (64, 76), "pd": (0.69, 0.77), "adc": (650, 780), "cbv": (1.0, 1.0)},
    "oedema": {"t1": (1600, 2200), "t2": (150, 260), "pd": (0.84, 0.92), "adc": (1100, 1700),
               "cbv": (0.6, 1.0)},
    "rim": {"t1": (1400, 1900), "t2": (100, 160), "pd": (0.80, 0.90), "adc": (850, 1250), "cbv": (2.5, 6.0)},
    "core": {"t1": (2400, 3800), "t2": (250, 800), "pd": (0.90, 1.0), "adc": (1600, 2600), "cbv": (0.05, 0.3)},
}
WM_CBV_RANGE = (1.8, 2.6)  # ml/100 g


@dataclass
class Tissue:
    t1: float
    t2: float
    pd: float
    adc: float
    cbv: float


def draw_tissues(rng: np.random.Generator) -> dict[str, Tissue]:
    """One subject's tissue properties, each drawn uniformly within its literature range."""
    wm_cbv = rng.uniform(*WM_CBV_RANGE)
    tissues = {}
    for name in TISSUES:
        values = {key: rng.uniform(*bounds) for key, bounds in PROPERTY_RANGES[name].items()}
        values["cbv"] *= wm_cbv
        tissues[name] = Tissue(**values)
    return tissues


@dataclass
class Sequence:
    """An MRI acquisition: kind (spgr, spin_echo, flair, dwi) and timing in ms (flip in degrees, b in s/mm²)."""

    kind: str
    tr: float
    te: float
    ti: float = 0.0
    flip: float = 90.0
    b: float = 0.0

    def signal(self, tissue: Tissue):
        """Steady-state magnitude signal of a tissue (relative to fully relaxed CSF); arrays broadcast."""
        e1, e2 = np.exp(-self.tr / tissue.t1), np.exp(-self.te / tissue.t2)
        if self.kind == "spgr":  # spoiled gradient echo (Ernst equation); T2* ≈ T2 at short TE
            alpha = np.deg2rad(self.flip)
            return tissue.pd * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1) * e2
        if self.kind in ("spin_echo", "dwi"):
            return tissue.pd * (1 - e1) * e2
        if self.kind == "flair":  # inversion recovery, magnitude reconstruction
            return tissue.pd * np.abs(1 - 2 * np.exp(-self.ti / tissue.t1) + e1) * e2
        raise ValueError(f"unknown sequence kind {self.kind!r}")


def draw_protocol(rng: np.random.Generator) -> dict[str, Sequence]:
    """One site's protocol at 3 T: T1w (spoiled GRE or spin echo), T2w, FLAIR and DWI (b = 0, 1000).

    FLAIR's inversion time nulls CSF of nominal T1 4.3 s within ±5 % (real protocols null it only roughly).
    """
    if rng.random() < 0.6:
        t1w = Sequence("spgr", tr=rng.uniform(6, 12), te=rng.uniform(2, 4), flip=rng.uniform(8, 15))
    else:
        t1w = Sequence("spin_echo", tr=rng.uniform(400, 700), te=rng.uniform(8, 15))
    flair_tr = rng.uniform(8000, 11000)
    csf_t1 = 4300.0 * rng.uniform(0.95, 1.05)
    flair_ti = csf_t1 * np.log(2 / (1 + np.exp(-flair_tr / csf_t1)))
    return {
        "t1": t1w,
        "t2": Sequence("spin_echo", tr=rng.uniform(3000, 6000), te=rng.uniform(80, 120)),
        "flair": Sequence("flair", tr=flair_tr, te=rng.uniform(90, 140), ti=flair_ti),
        "dwi": Sequence("dwi", tr=rng.uniform(5000, 8000), te=rng.uniform(60, 90), b=1000.0),
    }
