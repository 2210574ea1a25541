from setuptools import setup

setup(cffi_modules=["lib/softmax_grad/_native_build.py:ffi"])
