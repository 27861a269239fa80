//! Test guest that echoes every kind of WIT value, to test the host's conversion between JSON and
//! component values.

use std::f64::consts::PI;

wit_bindgen::generate!({ world: "types" });

/// The component's exports.
struct Types;

impl Guest for Types {
    fn echo(e: Everything) -> Everything {
        e
    }

    fn pair(a: u32, b: String) -> (u32, String) {
        (a, b)
    }

    fn shape_area(s: Shape) -> f64 {
        match s {
            Shape::Circle(radius) => PI * radius * radius,
            Shape::Rect((width, height)) => width * height,
            Shape::Point => 0.0,
        }
    }
}

impl exports::test::types::math::Guest for Types {
    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}

export!(Types);
