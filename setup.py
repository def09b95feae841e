"""convnet: AlexNet (Krizhevsky, Sutskever & Hinton, 2012) with two-tower model parallelism.

Package metadata and the list of compiled extensions live here; `pip install -e .` builds them.
"""
from setuptools import find_packages, setup

setup(
    name="convnet",
    version="0.1.0",
    description="A faithful, fast reproduction of AlexNet with hand-written CUDA kernels",
    python_requires=">=3.10",
    packages=find_packages(include=["convnet", "convnet.*"]),
    install_requires=["numpy>=1.24", "h5py>=3.8", "pillow>=10.0", "tqdm>=4.60"],
    extras_require={
        "cuda": ["cupy-cuda12x>=13.0"],
        "test": ["pytest>=7.4"],
    },
)
