-- The cabinet's text filter matches a normalized copy of the public text: lower case, and `ё`
-- written as `е`, so that "прошу" finds "Прошу" and "еж" finds "ёж" on every database alike.
-- The service writes the copy with every ticket (Rust's Unicode lower case). PostgreSQL's ILIKE
-- and lower() follow the database's locale and SQLite's fold ASCII alone, so neither is used to
-- search. Existing tickets are filled here the same way on both dialects: Russian capitals and
-- `ё` by hand, then lower() for ASCII (PostgreSQL's may fold further letters of other scripts,
-- SQLite's does not; appeals are written in Russian).
ALTER TABLE tickets ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE tickets SET search_text =
    replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(
        lower(public_text)
        , 'А', 'а'), 'Б', 'б'), 'В', 'в'), 'Г', 'г'), 'Д', 'д'), 'Е', 'е')
        , 'Ж', 'ж'), 'З', 'з'), 'И', 'и'), 'Й', 'й'), 'К', 'к'), 'Л', 'л')
        , 'М', 'м'), 'Н', 'н'), 'О', 'о'), 'П', 'п'), 'Р', 'р'), 'С', 'с')
        , 'Т', 'т'), 'У', 'у'), 'Ф', 'ф'), 'Х', 'х'), 'Ц', 'ц'), 'Ч', 'ч')
        , 'Ш', 'ш'), 'Щ', 'щ'), 'Ъ', 'ъ'), 'Ы', 'ы'), 'Ь', 'ь'), 'Э', 'э')
        , 'Ю', 'ю'), 'Я', 'я'), 'Ё', 'ё'), 'ё', 'е');
