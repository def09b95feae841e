"""Hyper-parameters of a response-normalization layer, and its coefficient convention."""
from dataclasses import dataclass

# How the configured α becomes the coefficient c in d = k + c·Σa².
ALPHA_CONVENTIONS = {
    # The paper's text: c = α.
    "paper": lambda alpha, terms: alpha,
    # The released code (and Caffe, PyTorch): c = α / (number of terms in the window),
    # n for cross-map, size² for same-map.
    "per-term": lambda alpha, terms: alpha / terms,
}


@dataclass(frozen=True)
class NormParams:
    size: int
    k: float
    alpha: float
    beta: float
    alpha_convention: str

    def __post_init__(self):
        if self.alpha_convention not in ALPHA_CONVENTIONS:
            raise ValueError(f"unknown alpha convention {self.alpha_convention!r}; "
                             f"choose one of {sorted(ALPHA_CONVENTIONS)}")
        if self.size < 1 or self.size % 2 != 1:
            raise ValueError(f"response normalization needs an odd window; got size {self.size}")

    def coefficient(self, terms: int) -> float:
        return ALPHA_CONVENTIONS[self.alpha_convention](self.alpha, terms)
