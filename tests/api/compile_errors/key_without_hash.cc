// Must NOT compile: a key type with operator== but no AbslHashValue. The test
// (check_compile_error.cmake) requires the first error to be KeyBy's message, reported from the
// KeyBy line below, with the fix spelled out.
#include <sluice/sluice.h>

struct Point {
  int64_t x = 0;
  int64_t y = 0;
  bool operator==(const Point&) const = default;
};

void Build(sluice::StreamEnvironment& env) {
  env.FromCollection(std::vector<Point>{{1, 2}})
      .KeyBy([](const Point& p) { return p; })  // KEYBY-LINE
      .Reduce([](const Point& a, const Point&) { return a; });
}
