# Warning flags for Sluice's own targets (not for users of the installed package).
function(sluice_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-missing-field-initializers)
endfunction()
