//! Plane geometry on normalised image coordinates, shared by zones (rules) and motion masks.

/// Whether `(x, y)` lies inside the polygon (even–odd rule).
pub fn in_polygon(x: f64, y: f64, polygon: &[vigil_schemas::events::Point]) -> bool {
    let mut inside = false;
    let mut j = polygon.len().wrapping_sub(1);
    for i in 0..polygon.len() {
        let (a, b) = (&polygon[i], &polygon[j]);
        if (a.y > y) != (b.y > y) && x < (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_schemas::events::Point;

    #[test]
    fn points_inside_and_outside_a_concave_zone() {
        // An L shape: the top-right quarter is outside.
        let l = [
            (0.0, 0.0),
            (0.5, 0.0),
            (0.5, 0.5),
            (1.0, 0.5),
            (1.0, 1.0),
            (0.0, 1.0),
        ]
        .map(|(x, y)| Point { x, y });
        assert!(in_polygon(0.25, 0.25, &l));
        assert!(in_polygon(0.75, 0.75, &l));
        assert!(!in_polygon(0.75, 0.25, &l), "the notch");
        assert!(!in_polygon(1.5, 0.75, &l));
        assert!(!in_polygon(0.5, 0.5, &[]), "no polygon, no zone");
    }
}
