// A small JSON reader and writer for the Kinesis JSON protocol (Boost 1.74 has no Boost.JSON).
// Numbers keep their text, so 64-bit integers and long sequence numbers survive unchanged.
//
//   SLUICE_ASSIGN_OR_RETURN(Json doc, Json::Parse(R"({"Shards": [{"ShardId": "s-0"}]})"));
//   for (const Json& shard : doc["Shards"].array()) Use(shard["ShardId"].string());
//   JsonWriter w; w.BeginObject(); w.Key("StreamName"); w.String("clicks"); w.EndObject();
//
// Not thread-safe; values are plain data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::kinesis_internal {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  Json() = default;
  static absl::StatusOr<Json> Parse(absl::string_view text);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_number() const { return type_ == Type::kNumber; }

  // Member `key` of an object; a null value when absent or when this is not an object.
  const Json& operator[](absl::string_view key) const;
  bool Has(absl::string_view key) const;
  // The string of a string value, the text of a number, "" otherwise.
  const std::string& string() const { return text_; }
  bool boolean() const { return type_ == Type::kBool && text_ == "true"; }
  double number() const;
  int64_t integer() const;
  const std::vector<Json>& array() const { return items_; }
  const std::map<std::string, Json, std::less<>>& object() const { return members_; }

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  std::string text_;
  std::vector<Json> items_;
  std::map<std::string, Json, std::less<>> members_;
};

// Writes compact JSON; the caller pairs Begin/End and puts a Key before each object member.
class JsonWriter {
 public:
  void BeginObject() {
    Separate();
    out_ += '{';
    first_ = true;
  }
  void EndObject() {
    out_ += '}';
    first_ = false;
  }
  void BeginArray() {
    Separate();
    out_ += '[';
    first_ = true;
  }
  void EndArray() {
    out_ += ']';
    first_ = false;
  }
  void Key(absl::string_view key) {
    Separate();
    AppendQuoted(key);
    out_ += ':';
    after_key_ = true;
  }
  void String(absl::string_view value) {
    Separate();
    AppendQuoted(value);
  }
  void Int(int64_t value) {
    Separate();
    out_ += std::to_string(value);
  }
  void Number(double value);
  // A number given as its JSON text (the caller makes sure it is one).
  void RawNumber(absl::string_view text) {
    Separate();
    out_.append(text.data(), text.size());
  }
  void Bool(bool value) {
    Separate();
    out_ += value ? "true" : "false";
  }
  // A member with a string value (the common case).
  void Field(absl::string_view key, absl::string_view value) {
    Key(key);
    String(value);
  }

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

  static void AppendQuoted(std::string& out, absl::string_view s);

 private:
  void Separate() {
    if (after_key_) {
      after_key_ = false;
    } else if (!first_) {
      out_ += ',';
    }
    first_ = false;
  }
  void AppendQuoted(absl::string_view s) { AppendQuoted(out_, s); }

  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace sluice::kinesis_internal
