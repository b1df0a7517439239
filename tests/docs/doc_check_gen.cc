// doc_check_gen: writes one C++ translation unit made of every ```cpp code block of the given
// Markdown files, so that compiling it checks the documentation's examples against the headers.
//
//   doc_check_gen <output.cc> <prelude header> <source root> <file.md>...
//
// The convention (the top of docs/api.md points here):
//   * Every block fenced with ```cpp (or ```c++) is compiled, each in its own namespace
//     (doc_<file>_L<line>), after the prelude header, which declares the record types and streams
//     the examples use (Click, Order, clicks, env, ...).
//   * `#include` lines of a block are moved to the top of the translation unit.
//   * The block's leading declarations — everything up to the end of its last top-level
//     definition of a class, struct, union, enum, template, namespace, alias or function — stay at
//     namespace scope; what follows is the body of a function `void Body()`. So a block may define
//     classes and then use them, or be a plain sequence of statements.
//   * A block whose preceding non-blank line is `<!-- doc-check: skip -->` is not compiled (for
//     pseudo-code or output that only looks like C++).
// `#line` directives make the compiler's messages name the Markdown file and line.
//
// Reads only the files named on its command line; writes only <output.cc> (when it changed).
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Block {
  std::string file;    // as given on the command line (relative to the source root)
  int first_line = 0;  // 1-based line of the block's first code line
  std::string code;    // the block's lines, '\n'-terminated, #include lines blanked
  std::vector<std::string> includes;
};

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// The blocks of one Markdown file. Fences of other languages are skipped whole.
bool ReadBlocks(const std::string& root, const std::string& file, std::vector<Block>& out) {
  std::ifstream in(root + "/" + file);
  if (!in) {
    std::cerr << "doc_check_gen: cannot read " << root << "/" << file << "\n";
    return false;
  }
  std::string line, previous;  // previous: the last non-blank line outside a fence
  int number = 0;
  bool in_fence = false, in_cpp = false, skip = false;
  Block block;
  while (std::getline(in, line)) {
    ++number;
    const std::string t = Trim(line);
    if (!in_fence) {
      if (StartsWith(t, "```")) {
        in_fence = true;
        const std::string lang = Trim(t.substr(3));
        in_cpp = lang == "cpp" || lang == "c++";
        skip = previous == "<!-- doc-check: skip -->";
        block = Block{file, number + 1, "", {}};
      } else if (!t.empty()) {
        previous = t;
      }
      continue;
    }
    if (t == "```") {
      in_fence = false;
      if (in_cpp && !skip) out.push_back(block);
      previous = "```";
      continue;
    }
    if (!in_cpp) continue;
    if (StartsWith(t, "#include")) {
      block.includes.push_back(t);
      block.code += "\n";
    } else {
      block.code += line + "\n";
    }
  }
  if (in_fence) {
    std::cerr << file << ":" << block.first_line - 1 << ": unterminated code fence\n";
    return false;
  }
  return true;
}

// A cursor over C++ text that skips comments, string and character literals.
class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}
  bool done() const { return i_ >= s_.size(); }
  size_t pos() const { return i_; }
  // Advances past whitespace and comments.
  void SkipSpace() {
    while (i_ < s_.size()) {
      if (std::isspace(static_cast<unsigned char>(s_[i_]))) {
        ++i_;
      } else if (s_.compare(i_, 2, "//") == 0) {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (s_.compare(i_, 2, "/*") == 0) {
        size_t e = s_.find("*/", i_ + 2);
        i_ = e == std::string::npos ? s_.size() : e + 2;
      } else {
        break;
      }
    }
  }
  // The next token: an identifier, a literal (whole), or one punctuation character.
  std::string Next() {
    SkipSpace();
    if (i_ >= s_.size()) return "";
    const size_t b = i_;
    const char c = s_[i_];
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      // Identifiers and numbers; a quote inside a number is a digit separator (10'000).
      const bool number = std::isdigit(static_cast<unsigned char>(c));
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
                                (number && s_[i_] == '\'') || (number && s_[i_] == '.'))) {
        ++i_;
      }
      // A string literal with an encoding prefix (u8"...", L'x') continues below.
      if (i_ < s_.size() && (s_[i_] == '"' || s_[i_] == '\'') && !number) {
        const std::string prefix = s_.substr(b, i_ - b);
        if (prefix == "u8" || prefix == "u" || prefix == "U" || prefix == "L" || prefix == "R") {
          SkipQuoted(prefix == "R");
        }
      }
      return s_.substr(b, i_ - b);
    }
    if (c == '"' || c == '\'') {
      SkipQuoted(false);
      return s_.substr(b, i_ - b);
    }
    ++i_;
    return std::string(1, c);
  }

 private:
  void SkipQuoted(bool raw) {
    const char q = s_[i_];
    if (raw) {  // R"delim( ... )delim"
      size_t open = s_.find('(', i_);
      if (open == std::string::npos) {
        i_ = s_.size();
        return;
      }
      const std::string end = ")" + s_.substr(i_ + 1, open - i_ - 1) + "\"";
      size_t e = s_.find(end, open);
      i_ = e == std::string::npos ? s_.size() : e + end.size();
      return;
    }
    ++i_;
    while (i_ < s_.size() && s_[i_] != q && s_[i_] != '\n') {
      if (s_[i_] == '\\') ++i_;
      ++i_;
    }
    if (i_ < s_.size()) ++i_;
  }

  const std::string& s_;
  size_t i_ = 0;
};

bool IsDefinitionKeyword(const std::string& t) {
  static const std::set<std::string> kKeywords = {"class",    "struct",    "union", "enum",
                                                  "template", "namespace", "using", "typedef"};
  return kKeywords.count(t) > 0;
}
bool IsStatementKeyword(const std::string& t) {
  static const std::set<std::string> kKeywords = {"if",   "for",   "while",    "switch", "do",
                                                  "try",  "{",     "return",   "case",   "default",
                                                  "else", "break", "continue", "goto"};
  return kKeywords.count(t) > 0;
}

// The offset where the block's namespace-scope part ends: the end of its last top-level
// definition (0 when it has none).
size_t NamespacePartEnd(const std::string& code) {
  Lexer lex(code);
  size_t end = 0;
  while (true) {
    lex.SkipSpace();
    if (lex.done()) break;
    // One top-level chunk: a declaration or statement.
    const std::string first = lex.Next();
    bool definition = IsDefinitionKeyword(first);
    const bool statement = IsStatementKeyword(first);
    bool assigned = false;  // a top-level '=' seen: what follows is an initializer
    int depth = first == "{" || first == "(" || first == "[" ? 1 : 0;
    std::string t = first, prev;  // prev: the token before t at depth 0
    while (true) {
      if (depth == 0 && t == ";") break;
      if (depth == 0) prev = t;
      t = lex.Next();
      if (t.empty()) break;
      if (t == "(" || t == "[" || t == "{") {
        if (t == "{" && depth == 0 && !assigned && !definition && !statement &&
            (prev == ")" || prev == "const" || prev == "override" || prev == "final" ||
             prev == "noexcept")) {
          definition = true;  // `name(...) [const] {` at the top level: a function definition
        }
        ++depth;
        continue;
      }
      if (t == ")" || t == "]" || t == "}") {
        --depth;
        // A function body, namespace or compound statement ends at its '}'; a class body and a
        // braced initializer go on to the ';'.
        if (depth == 0 && t == "}" && !assigned && (definition || statement) && first != "class" &&
            first != "struct" && first != "union" && first != "enum") {
          lex.SkipSpace();
          if (lex.done() || code[lex.pos()] != ';') break;
        }
        continue;
      }
      if (t == "=" && depth == 0) assigned = true;
    }
    if (definition) end = lex.pos();
  }
  return end;
}

int LineAt(const std::string& code, size_t offset) {
  int line = 0;
  for (size_t i = 0; i < offset && i < code.size(); ++i) line += code[i] == '\n';
  return line;
}

std::string NamespaceName(const Block& b) {
  std::string name = "doc_";
  for (char c : b.file) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name + "_L" + std::to_string(b.first_line);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: doc_check_gen <output.cc> <prelude header> <source root> <file.md>...\n";
    return 2;
  }
  const std::string output = argv[1], prelude = argv[2], root = argv[3];
  std::vector<Block> blocks;
  for (int i = 4; i < argc; ++i) {
    if (!ReadBlocks(root, argv[i], blocks)) return 1;
  }

  std::ostringstream tu;
  tu << "// Generated by doc_check_gen (tests/docs/) from the ```cpp blocks of";
  for (int i = 4; i < argc; ++i) tu << " " << argv[i];
  tu << ". Do not edit.\n";
  tu << "#include \"" << prelude << "\"\n";
  std::set<std::string> seen;
  for (const Block& b : blocks) {
    for (const std::string& inc : b.includes) {
      if (seen.insert(inc).second) tu << inc << "\n";
    }
  }
  for (const Block& b : blocks) {
    const std::string path = root + "/" + b.file;
    const size_t split = NamespacePartEnd(b.code);
    tu << "\nnamespace " << NamespaceName(b) << " {\n";
    if (split > 0) {
      tu << "#line " << b.first_line << " \"" << path << "\"\n" << b.code.substr(0, split) << "\n";
    }
    const std::string body = b.code.substr(split);
    if (!Trim(body).empty()) {
      tu << "[[maybe_unused]] void Body() {\n";
      tu << "#line " << b.first_line + LineAt(b.code, split) << " \"" << path << "\"\n";
      // Keep the body's columns: the split may fall in the middle of a line.
      size_t line_start = b.code.rfind('\n', split == 0 ? 0 : split - 1);
      line_start = (line_start == std::string::npos || split == 0) ? 0 : line_start + 1;
      tu << std::string(split - line_start, ' ') << body << "}\n";
    }
    tu << "}  // namespace " << NamespaceName(b) << "\n";
  }

  // Write only when the text changed, so an unchanged document does not recompile.
  std::ifstream old(output);
  std::stringstream old_text;
  old_text << old.rdbuf();
  if (old && old_text.str() == tu.str()) return 0;
  std::ofstream out(output);
  out << tu.str();
  if (!out) {
    std::cerr << "doc_check_gen: cannot write " << output << "\n";
    return 1;
  }
  std::cerr << "doc_check_gen: " << blocks.size() << " code blocks\n";
  return 0;
}
