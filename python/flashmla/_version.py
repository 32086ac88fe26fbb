__version__ = "0.1.0"  # the C library's version (CMakeLists.txt project VERSION)
