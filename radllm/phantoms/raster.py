"""Vectorised drawing on a square pixel canvas whose patient coordinates are rotated and scaled.

Positioning (rotation, scale, shift) is applied to the *coordinates* before anything is drawn,
so shapes are rasterised once, directly in image space, and their masks line up with the final
image without resampling.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from PIL import Image, ImageDraw

Array = np.ndarray


class Frame:
    """Maps normalised patient coordinates (x right, y down, in [0, 1]) to pixels of a canvas.

    Patient point p goes to pixel (col, row) = (R·s·(p − c) + c + shift)·size − ½, with c the
    image centre and R a rotation: the pixel centre of column j sits at x = (j + ½)/size.
    """

    def __init__(self, size: int, rotation_deg: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)):
        self.size = int(size)
        theta = math.radians(rotation_deg)
        self._forward = scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        self._inverse = np.linalg.inv(self._forward)
        self._shift = np.asarray(shift, dtype=np.float64)
        self._grid: tuple[Array, Array] | None = None

    @property
    def pixel_size(self) -> float:
        """Length of one pixel in normalised patient units (rotation does not change it)."""
        return 1.0 / (self.size * float(np.sqrt(abs(np.linalg.det(self._forward)))))

    def to_pixels(self, points: Array) -> Array:
        """(N, 2) patient xy -> (N, 2) pixel (col, row)."""
        p = np.asarray(points, dtype=np.float64) - 0.5
        return ((p @ self._forward.T) + 0.5 + self._shift) * self.size - 0.5

    def to_patient(self, cols: Array, rows: Array) -> tuple[Array, Array]:
        """Pixel coordinates (any matching shapes) -> patient (x, y) arrays of the same shape."""
        u = (np.asarray(cols, dtype=np.float64) + 0.5) / self.size - 0.5 - self._shift[0]
        v = (np.asarray(rows, dtype=np.float64) + 0.5) / self.size - 0.5 - self._shift[1]
        inv = self._inverse
        x = inv[0, 0] * u + inv[0, 1] * v + 0.5
        y = inv[1, 0] * u + inv[1, 1] * v + 0.5
        return x.astype(np.float32), y.astype(np.float32)

    def grid(self) -> tuple[Array, Array]:
        """Patient (x, y) of every pixel centre, each (size, size) float32; computed once."""
        if self._grid is None:
            rows, cols = np.mgrid[0 : self.size, 0 : self.size]
            self._grid = self.to_patient(cols, rows)
        return self._grid

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[slice, slice], Array, Array] | None:
        """Pixel window covering the patient box [x0, x1] x [y0, y1] and its patient coordinates.

        Returns (slices, x, y) for restricting per-pixel work to a small area, or None when the box
        falls outside the canvas.
        """
        corners = self.to_pixels(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]))
        c0, r0 = np.floor(corners.min(axis=0)).astype(int) - 1
        c1, r1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, self.size), min(r1, self.size)
        if c0 >= c1 or r0 >= r1:
            return None
        gx, gy = self.grid()
        sl = (slice(r0, r1), slice(c0, c1))
        return sl, gx[sl], gy[sl]

    def polygon(self, points: Array) -> Array:
        """Binary float32 mask of a closed polygon given in patient coordinates."""
        return self.polygons([points])

    def polygons(self, outlines: list[Array]) -> Array:
        """Binary float32 mask of the union of closed polygons (patient coordinates).

        Pixels whose centres lie inside (or on) an outline are set; PIL's scan-line fill puts
        pixel centres at half-integer coordinates, hence the 0.5 offset.
        """
        canvas = Image.new("L", (self.size, self.size))
        draw = ImageDraw.Draw(canvas)
        if outlines:
            # One coordinate transform for all outlines, then split back per polygon.
            pix = (self.to_pixels(np.concatenate(outlines)) + 0.5).tolist()
            start = 0
            for points in outlines:
                draw.polygon([tuple(p) for p in pix[start : start + len(points)]], fill=1)
                start += len(points)
        return np.asarray(canvas, dtype=np.float32)

    def splat(self, segments: Array, weights: Array | None = None) -> Array:
        """Deposit mass `weight` per pixel of length along each segment (bilinear), no blur.

        `segments` is (K, 2, 2): K segments of two patient-coordinate points. Segments are
        resampled at half-pixel spacing, so a straight line yields ≈ weight per pixel along it.
        """
        canvas = np.zeros(self.size * self.size, dtype=np.float64)
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2, 2)
        if len(segments) == 0:
            return canvas.reshape(self.size, self.size).astype(np.float32)
        weights = np.ones(len(segments)) if weights is None else np.asarray(weights, dtype=np.float64)
        pix = self.to_pixels(segments.reshape(-1, 2)).reshape(-1, 2, 2)
        seg = pix[:, 1] - pix[:, 0]
        seg_len = np.hypot(seg[:, 0], seg[:, 1])
        n = np.maximum(np.ceil(seg_len * 2.0).astype(int), 1)
        # Points at fractions k/n along each segment, all segments at once.
        idx = np.repeat(np.arange(len(seg)), n)
        frac = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n, n)
        pts = pix[idx, 0] + seg[idx] * frac[:, None]
        w = np.repeat(seg_len / n * weights, n)
        c0 = np.floor(pts[:, 0]).astype(int)
        r0 = np.floor(pts[:, 1]).astype(int)
        fc = pts[:, 0] - c0
        fr = pts[:, 1] - r0
        for dc, dr, wk in ((0, 0, (1 - fc) * (1 - fr)), (1, 0, fc * (1 - fr)), (0, 1, (1 - fc) * fr), (1, 1, fc * fr)):
            c, r = c0 + dc, r0 + dr
            ok = (c >= 0) & (c < self.size) & (r >= 0) & (r < self.size)
            canvas += np.bincount(r[ok] * self.size + c[ok], weights=(w * wk)[ok], minlength=canvas.size)
        return canvas.reshape(self.size, self.size).astype(np.float32)

    def stroke(self, segments: Array, width: float, weights: Array | None = None) -> Array:
        """Soft lines of full width `width` (patient units) with peak value ≈ weight (clipped to 1).

        Splatted centre lines are blurred with a Gaussian whose σ matches the width; the result is
        rescaled so a line's cross-section peaks at its weight.
        """
        wanted = width / self.pixel_size / 2.5
        sigma = max(wanted, 0.5)
        lines = ndimage.gaussian_filter(self.splat(segments, weights), sigma, truncate=3.0)
        # A unit-density line blurred by σ peaks at 1/(√(2π)σ); bilinear splatting adds ≈ 0.3 px².
        # Lines thinner than a pixel are drawn one pixel wide but proportionally fainter, so a
        # line's integrated density does not depend on the image size.
        peak = 1.0 / math.sqrt(2.0 * math.pi * (sigma**2 + 0.3))
        return np.minimum(lines * (wanted / sigma) / peak, 1.0)


def segments_of(*polylines: Array) -> Array:
    """(K, 2, 2) segments joining consecutive points of each (N, 2) polyline."""
    return np.concatenate([np.stack([line[:-1], line[1:]], axis=1) for line in polylines])


def band_outline(centre: Array, half_width: float) -> Array:
    """Closed outline of a band of `half_width` around a polyline centre line ((N, 2) -> (2N, 2))."""
    step = np.diff(centre, axis=0)
    # Tangent at each point: central difference inside, one-sided at the ends.
    tangent = np.concatenate([step[:1], step[:-1] + step[1:], step[-1:]])
    tangent /= np.maximum(np.hypot(tangent[:, :1], tangent[:, 1:]), 1e-12)
    normal = tangent[:, ::-1] * np.array([-half_width, half_width])
    return np.concatenate([centre + normal, (centre - normal)[::-1]])


def blur(image: Array, sigma_px: float) -> Array:
    """Gaussian blur in pixels (no-op for σ < 0.2)."""
    if sigma_px < 0.2:
        return image
    return ndimage.gaussian_filter(image, sigma_px, truncate=3.0)


def smoothstep(edge0: float | Array, edge1: float | Array, x: Array) -> Array:
    """Hermite step from 0 at `edge0` to 1 at `edge1` (either order)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def catmull_rom(points: Array, samples: int = 12, closed: bool = False) -> Array:
    """Smooth curve through `points` ((N, 2)) with `samples` points per segment.

    Uniform Catmull-Rom: the curve passes through every control point, so extremes such as the
    heart's widest point land where the spec put them.
    """
    pts = np.asarray(points, dtype=np.float64)
    if closed:
        ext = np.concatenate([pts[-1:], pts, pts[:2]])
    else:
        ext = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    t2, t3 = t * t, t * t * t
    # Basis weights (1, samples, 1) against control points (segments, 1, 2).
    p0, p1, p2, p3 = (ext[i : len(ext) - 3 + i, None, :] for i in range(4))
    curve = (
        (-0.5 * t3 + t2 - 0.5 * t) * p0
        + (1.5 * t3 - 2.5 * t2 + 1.0) * p1
        + (-1.5 * t3 + 2.0 * t2 + 0.5 * t) * p2
        + (0.5 * t3 - 0.5 * t2) * p3
    ).reshape(-1, 2)
    if not closed:
        curve = np.concatenate([curve, pts[-1:]])
    return curve


def smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> Array:
    """Band-limited noise scaled to [0, 1] (texture for patchy opacities)."""
    field = blur(rng.standard_normal((size, size)).astype(np.float32), sigma_px)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def polyline_distance(x: Array, y: Array, line: Array) -> Array:
    """Euclidean distance from points (x, y) (any matching shapes) to a polyline ((N, 2))."""
    px, py = x[..., None], y[..., None]
    a, b = line[:-1], line[1:]
    ab = b - a
    length2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    t = np.clip(((px - a[:, 0]) * ab[:, 0] + (py - a[:, 1]) * ab[:, 1]) / length2, 0.0, 1.0)
    dx = px - (a[:, 0] + t * ab[:, 0])
    dy = py - (a[:, 1] + t * ab[:, 1])
    return np.sqrt((dx * dx + dy * dy).min(axis=-1))
