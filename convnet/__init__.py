"""convnet: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) on two towers.

The network is data (`convnet.alexnet`), placed on towers (`convnet.placement`), executed by a
backend (`convnet.backend`) through one op interface.
"""
__version__ = "0.1.0"
