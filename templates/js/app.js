// The function {{name}}: exports the world `app:function/function` (wit/world.wit). WIT names
// are camelCase here; a `result` export returns its ok value or throws its error.

export function greet(name) {
  return `Hello, ${name}!`;
}

export function add(a, b) {
  const sum = a + b;
  if (sum < -(2 ** 31) || sum >= 2 ** 31) throw `${a} + ${b} does not fit in an s32`;
  return sum;
}
