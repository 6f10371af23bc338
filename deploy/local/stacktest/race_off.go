//go:build !race

package stacktest

// raceEnabled reports whether this binary was built with -race; Build then
// builds binaries with -race too.
const raceEnabled = false
