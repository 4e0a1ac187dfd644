// Face chips on the GPU: for each face, the square chip of `side × side` pixels whose rows run
// along the eye line. Chip pixel (u, v) samples the image at
//     centre + R(angle) · ((u, v) · size / side - (0.5, 0.43) · size)
// with bilinear interpolation (zero outside the image), then v * mul[c] + add[c], written as
// planar NCHW f32. With angle 0 this is face-api's unrotated descriptor crop resized with
// TensorFlow's legacy rule. Pixels are packed r | g << 8 | b << 16 per pixel, stored as f32.
// `vigil_models::preprocess::cpu_align` is the CPU twin; a test holds them equal.

@group(0) @binding(0) var<storage, read_write> pixels: array<f32>;
// Header (12 words): in_w, in_h, side, 0, mul[3] and add[3] as f32 bits, 0, 0.
// Then 8 words per face: centre x, centre y, size, cos(angle), sin(angle) as f32 bits, 0, 0, 0.
@group(0) @binding(1) var<storage, read_write> params: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

fn pixel(x: i32, y: i32, c: u32) -> f32 {
    if (x < 0 || y < 0 || x >= i32(params[0]) || y >= i32(params[1])) {
        return 0.0;
    }
    let packed = u32(pixels[u32(y) * params[0] + u32(x)]);
    return f32((packed >> (8u * c)) & 255u);
}

@compute @workgroup_size(64)
fn align(@builtin(global_invocation_id) gid: vec3<u32>) {
    let side = params[2];
    let plane = side * side;
    let i = gid.x;
    if (i >= 3u * plane) {
        return;
    }
    let n = gid.y;
    let c = i / plane;
    let v = (i % plane) / side;
    let u = i % side;
    let face = 12u + 8u * n;
    let cx = bitcast<f32>(params[face]);
    let cy = bitcast<f32>(params[face + 1u]);
    let size = bitcast<f32>(params[face + 2u]);
    let cs = bitcast<f32>(params[face + 3u]);
    let sn = bitcast<f32>(params[face + 4u]);
    let step = size / f32(side);
    let dx = f32(u) * step - 0.5 * size;
    let dy = f32(v) * step - 0.43 * size;
    let x = cx + cs * dx - sn * dy;
    let y = cy + sn * dx + cs * dy;
    let x0 = floor(x);
    let y0 = floor(y);
    let fx = x - x0;
    let fy = y - y0;
    let xi = i32(x0);
    let yi = i32(y0);
    let top = pixel(xi, yi, c) + (pixel(xi + 1, yi, c) - pixel(xi, yi, c)) * fx;
    let bottom = pixel(xi, yi + 1, c) + (pixel(xi + 1, yi + 1, c) - pixel(xi, yi + 1, c)) * fx;
    let value = top + (bottom - top) * fy;
    output[n * 3u * plane + i] = value * bitcast<f32>(params[4u + c]) + bitcast<f32>(params[7u + c]);
}
