#include <sluice/state/serializer_identity.h>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace sluice {
namespace {

// The demangled name of a mangled type name, or the name itself when it does not demangle.
std::string Demangle(const std::string& mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), std::free);
  return status == 0 && out != nullptr ? std::string(out.get()) : mangled;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

std::string ReadableSerializerIdentity(std::string_view identity) {
  std::string out;
  size_t i = 0;
  while (i < identity.size()) {
    // A leaf starts at the beginning or after '<' or ','.
    const bool leaf_start = i == 0 || identity[i - 1] == '<' || identity[i - 1] == ',';
    std::string_view rest = identity.substr(i);
    std::string_view prefix;
    for (std::string_view p : {"raw:", "enum:", "type:"}) {
      if (leaf_start && rest.substr(0, p.size()) == p) prefix = p;
    }
    if (prefix.empty()) {
      out.push_back(identity[i++]);
      continue;
    }
    size_t end = prefix.size();
    while (end < rest.size() && IsNameChar(rest[end])) ++end;
    const std::string name = Demangle(std::string(rest.substr(prefix.size(), end - prefix.size())));
    i += end;
    if (prefix == "type:") {
      out += name;
      continue;
    }
    // ":<size>" follows.
    size_t size_end = end;
    if (size_end < rest.size() && rest[size_end] == ':') {
      ++size_end;
      while (size_end < rest.size() && rest[size_end] >= '0' && rest[size_end] <= '9') ++size_end;
    }
    const std::string_view size = rest.substr(end, size_end - end);
    i += size_end - end;
    out += prefix == "enum:" ? "enum " : "";
    out += name;
    if (size.size() > 1) {
      out += " (";
      out += size.substr(1);
      out += " bytes)";
    }
  }
  return out;
}

}  // namespace sluice
