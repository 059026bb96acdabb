"""A stand-in for Colab's ``google.colab`` package, for the Colab check.

Colab imports ``google.colab`` when its kernel starts, and notebooks test
``"google.colab" in sys.modules`` to know they run there. The check's kernel
imports this module at start-up (``ipython_startup``) so notebooks take their
Colab path. It provides only what a notebook might call in passing; none of
Colab's services (Drive, file upload) exists here.
"""

from . import output  # noqa: F401

__version__ = "0.0.0+colab-check"
IN_COLAB_CHECK = True
