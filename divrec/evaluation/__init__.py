"""Full-catalogue evaluation: scores -> masked top-M -> re-rank -> top-K -> metrics."""
