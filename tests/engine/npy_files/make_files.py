"""Writes the small .npy files the engine tests read (tests/engine/npy_test.c,
param_test.c). Run from this directory: /usr/bin/python3 make_files.py"""
import numpy as np
from numpy.lib import format as npf

a = np.arange(6, dtype=np.float32).reshape(2, 3) / 4  # 0, .25, ... exact in binary
np.save("ok_f32.npy", a)
np.save("ok_f64.npy", a.astype(np.float64))
np.save("ok_i32.npy", np.array([3, -1, 2147483647], dtype=np.int32))
np.save("ok_i64.npy", np.array([[1, -2], [1 << 40, 0]], dtype=np.int64))
with open("ok_v2.npy", "wb") as f:  # format 2.0 (4-byte header length)
    npf.write_array(f, a, version=(2, 0))
np.save("int8.npy", np.array([1, 2, 3], dtype=np.int8))
np.save("complex.npy", np.array([1 + 2j, 3 - 4j], dtype=np.complex64))
np.save("bigendian.npy", a.astype(">f4"))
np.save("fortran.npy", np.asfortranarray(a))
np.save("wrong_shape.npy", np.zeros((4, 3), dtype=np.float32))
with open("ok_f32.npy", "rb") as f:
    whole = f.read()
with open("truncated.npy", "wb") as f:  # the data of ok_f32.npy cut by 5 bytes
    f.write(whole[:-5])
with open("trailing.npy", "wb") as f:  # ok_f32.npy with 4 extra bytes
    f.write(whole + b"\0\0\0\0")
with open("header_only.npy", "wb") as f:  # cut inside the header
    f.write(whole[:40])
