// Must NOT compile: a key type with a hash but no operator==.
#include <sluice/sluice.h>

struct Tag {
  int64_t id = 0;
  template <typename H>
  friend H AbslHashValue(H h, const Tag& t) {
    return H::combine(std::move(h), t.id);
  }
};

void Build(sluice::StreamEnvironment& env) {
  env.FromCollection(std::vector<Tag>{{1}})
      .KeyBy([](const Tag& t) { return t; })  // KEYBY-LINE
      .Reduce([](const Tag& a, const Tag&) { return a; });
}
