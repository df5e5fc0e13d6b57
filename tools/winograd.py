#!/usr/bin/python3
"""The Winograd transform matrices of compiler/ops/winograd.c, derived and checked.

  /usr/bin/python3 tools/winograd.py

For F(m, r) (m outputs of an r-tap correlation from m + r - 1 inputs) and
interpolation points p (plus the point at infinity), the Toom-Cook
construction gives A^T (m x a), G (a x r) and B^T (a x a), a = m + r - 1, with
    y = A^T [(G g) * (B^T d)].
Prints each as a C initializer and checks the identity exactly (fractions),
then the float32 error of the 2-D form against a float64 direct correlation
(the reason for the points chosen: of 0, 1, -1 with +-2, +-1/2 or +-3/2,
0, 1, -1, 2, -1/2 err least for F(2, 5), and 0, 1, -1, 1/2, -2 for F(4, 3):
1.2e-6, where +-2 give 2.6e-6 and +-1/2 3.1e-6). winograd.c holds this output.
Needs python3-numpy.
"""
from fractions import Fraction as Fr

import numpy as np

CASES = [(2, 3, [0, 1, -1]), (4, 3, [0, 1, -1, Fr(1, 2), -2]), (2, 5, [0, 1, -1, 2, Fr(-1, 2)])]


def polymul(a, b):
    r = [Fr(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            r[i + j] += x * y
    return r


def matrices(m, r, pts):
    a = m + r - 1
    pts = [Fr(p) for p in pts]
    assert len(pts) == a - 1
    at = [[pts[j] ** i for j in range(a - 1)] + [Fr(int(i == m - 1))] for i in range(m)]
    g = []
    for j in range(a - 1):
        f = Fr(1)
        for k in range(a - 1):
            if k != j:
                f *= pts[j] - pts[k]
        g.append([pts[j] ** k / f for k in range(r)])
    g.append([Fr(int(k == r - 1)) for k in range(r)])
    bt = []
    for j in range(a):
        poly = [Fr(1)]
        for k in range(a - 1):
            if k != j:
                poly = polymul(poly, [-pts[k], Fr(1)])
        bt.append(poly + [Fr(0)] * (a - len(poly)))
    return at, g, bt


def exact_check(m, r, at, g, bt):
    a = m + r - 1
    for i in range(m):
        for u in range(a):          # y_i's coefficient of d_u g_k must be [u == i + k]
            for k in range(r):
                coef = sum(at[i][j] * g[j][k] * bt[j][u] for j in range(a))
                assert coef == int(u == i + k), (i, u, k, coef)


def float_error(m, r, at, g, bt, C=6, M=16, H=14):
    a = m + r - 1
    AT, G, BT = (np.array(x, dtype=np.float32) for x in (at, g, bt))
    rng = np.random.default_rng(1)
    d = rng.uniform(0, 1, (H, H, C)).astype(np.float32)
    w = (rng.normal(0, 1, (M, C, r, r)) / np.sqrt(C * r * r)).astype(np.float32)
    U = np.einsum("ij,mcjk,lk->ilcm", G, w, G).astype(np.float32)
    O = H - r + 1
    err = 0.0
    for th in range(O // m):
        for tw in range(O // m):
            tile = d[th * m:th * m + a, tw * m:tw * m + a]
            V = np.einsum("ij,jkc,lk->ilc", BT, tile, BT).astype(np.float32)
            Y = np.einsum("ij,jkm,lk->ilm", AT, np.einsum("ilc,ilcm->ilm", V, U), AT)
            ref = sum(np.einsum("hwc,mc->hwm", d[th * m + kh:th * m + kh + m, tw * m + kw:tw * m + kw + m]
                                .astype(np.float64), w[:, :, kh, kw].astype(np.float64))
                      for kh in range(r) for kw in range(r))
            err = max(err, float(np.abs(Y - ref).max()))
    return err


def c_array(name, rows):
    cells = ", ".join("%d" % x if x.denominator == 1 else "%d.0 / %d" % (x.numerator, x.denominator)
                      for row in rows for x in row)
    return "static const double %s[] = {%s};" % (name, cells)


if __name__ == "__main__":
    for m, r, pts in CASES:
        at, g, bt = matrices(m, r, pts)
        exact_check(m, r, at, g, bt)
        print("/* F(%d, %d), points %s and infinity; float32 error %.2g */"
              % (m, r, ", ".join(str(p) for p in pts), float_error(m, r, at, g, bt)))
        for name, rows in (("AT", at), ("G", g), ("BT", bt)):
            print(c_array("%s%d%d" % (name, m, r), rows))
