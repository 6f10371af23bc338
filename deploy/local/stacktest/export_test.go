package stacktest

// Exported for the external tests.
const RaceEnabledForTest = raceEnabled
