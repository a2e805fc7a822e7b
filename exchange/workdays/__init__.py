"""Working days: the calendar of Flemish public holidays and school holidays behind legal deadlines."""
